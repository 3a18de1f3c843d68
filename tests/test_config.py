"""Every root config composes, every group option loads, and the catalog checks values."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from router_model.config import CONF_DIR, Catalog, ConfigError
from tests.helpers import REPO, compose_config

# Every root config: one per command (base.yaml is what they share, not a command).
ROOTS = sorted(p.stem for p in Path(CONF_DIR).glob("*.yaml") if p.stem != "base")
GROUP_OPTIONS = sorted(
    (group.name, option.stem)
    for group in Path(CONF_DIR).iterdir() if group.is_dir()
    for option in group.glob("*.yaml")
    if group.name != "experiment"
)
EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("root", ROOTS)
def test_every_root_config_composes_and_resolves(root):
    cfg = compose_config(root)
    OmegaConf.resolve(cfg)
    catalog = Catalog.from_config(cfg)
    assert catalog.ladder == ["gpt-oss-20b", "gpt-oss-120b", "qwen3-max"]


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_group_option_composes_with_its_own_values(group, option):
    """Selecting an option puts that file's own values into the composed config (onto the
    shared base, which overrides nothing)."""
    root = "base"
    cfg = compose_config(root, [f"+{group}={option}"] if group not in compose_config(root)
                         else [f"{group}={option}"])
    own = OmegaConf.load(Path(CONF_DIR) / group / f"{option}.yaml")
    leaves = {k: v for k, v in OmegaConf.to_container(own).items()
              if k != "defaults" and not isinstance(v, dict | list) and v is not None
              and not (isinstance(v, str) and "${" in v)}
    for key, value in leaves.items():
        assert cfg[group][key] == value, f"{group}={option}: {key}"


def test_swapping_a_model_is_a_config_edit():
    cfg = compose_config(overrides=["tiers.qwen3-max.model_id=vendor/new-premium",
                                    "tiers.qwen3-max.base_url=http://127.0.0.1:9/v1"])
    tier = Catalog.from_config(cfg).tiers["qwen3-max"]
    assert (tier.model_id, tier.base_url) == ("vendor/new-premium", "http://127.0.0.1:9/v1")


@pytest.mark.parametrize(("override", "message"), [
    ("gate.severe_threshold=0.9", "severe_threshold"),
    ("gate.overflow_tier=nope", "gate.overflow_tier='nope'"),
    ("fields.course_title.static_tier=gpt-5", "fields.course_title.static_tier='gpt-5'"),
    ("tiers.gpt-oss-20b.price_in_per_m=-1", "tiers.gpt-oss-20b.price_in_per_m=-1"),
    ("fields.exercise.impact=11", "fields.exercise.impact=11"),
])
def test_bad_config_values_are_named(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        Catalog.from_config(compose_config(overrides=[override]))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("root", ["router_train", "router_evaluate", "router_serve"])
def test_every_experiment_composes_onto_the_roots_it_names(root, experiment):
    cfg = compose_config(root, [f"+experiment={experiment}"])
    OmegaConf.resolve(cfg)
    Catalog.from_config(cfg)
    own = OmegaConf.load(Path(CONF_DIR) / "experiment" / f"{experiment}.yaml")
    for group, values in OmegaConf.to_container(own).items():
        if group in cfg:  # the experiment's values win over the root's
            for key, value in values.items():
                got = cfg[group][key]
                assert (OmegaConf.to_container(got) if hasattr(got, "items") else got) == \
                    value or (isinstance(value, dict) and all(
                        cfg[group][key][k] == v for k, v in value.items())), (group, key)


# Every console script the package installs, read from pyproject.toml: a new command is
# covered without touching this test.
SCRIPTS = sorted(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_command_has_a_working_help(script):
    import subprocess
    import sys

    exe = Path(sys.executable).parent / script
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(script) and "Configuration groups" in out.stdout
