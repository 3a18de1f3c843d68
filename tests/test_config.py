"""Every root config composes, every group option loads, and the catalog checks values."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from router_model.config import CONF_DIR, Catalog, ConfigError
from tests.helpers import compose_config

ROOTS = sorted(p.stem for p in Path(CONF_DIR).glob("router_*.yaml"))
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
def test_every_group_option_composes(group, option):
    root = ROOTS[0]
    cfg = compose_config(root, [f"+{group}={option}"] if group not in compose_config(root)
                         else [f"{group}={option}"])
    assert group in cfg


def test_seed_values_are_the_defaults(catalog):
    gate = catalog.gate
    assert (gate.pass_threshold, gate.severe_threshold, gate.retries_per_tier) == (0.75, 0.60, 2)
    assert gate.context_overflow_tokens == 100_000
    assert gate.overflow_tier == "gemini-2.5-flash"
    assert {f.static_tier for f in catalog.fields.values() if f.kind == "metadata"} == {"qwen3-max"}
    assert catalog.fields["lesson_content"].static_tier == "gpt-oss-120b"
    assert catalog.fields["exercise"].static_tier == "gpt-oss-20b"
    prices = [catalog.tiers[t].price_out_per_m for t in catalog.ladder]
    assert prices == sorted(prices), "ladder must be ordered cheap -> premium"


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


SCRIPTS = ["router-simulate", "router-prepare", "router-train", "router-evaluate",
           "router-serve", "router-benchmark"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_command_has_a_working_help(script):
    import subprocess
    import sys

    exe = Path(sys.executable).parent / script
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(f"{script}:") and "Configuration groups" in out.stdout
