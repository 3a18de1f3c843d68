"""dvc.yaml stays true: every stage's command is an installed entry point, its deps list
every project module that entry point imports, params exist, the stages chain
simulate -> prepare -> train -> evaluate, and their outputs are byte-identical on a rerun."""

from __future__ import annotations

import hashlib
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from tests.helpers import compose_config, tmp_paths
from tests.imports import closure, import_graph, module_files

ROOT = Path(__file__).resolve().parents[1]


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_commands_are_installed_entry_points():
    for name, stage in stages().items():
        program = stage["cmd"].split()[0]
        assert shutil.which(program) or (ROOT / ".venv" / "bin" / program).exists(), (
            f"stage {name}: {program} is not installed")


def test_code_and_params_dependencies_exist():
    outs = {o if isinstance(o, str) else next(iter(o)) for s in stages().values()
            for o in s.get("outs", [])}
    for name, stage in stages().items():
        for dep in stage.get("deps", []):
            assert (ROOT / dep).exists() or dep in outs, f"stage {name}: missing dep {dep}"
        for entry in stage.get("params", []):
            path = entry if isinstance(entry, str) else next(iter(entry))
            params_file = ROOT / path.rstrip(":")
            assert params_file.exists(), f"stage {name}: missing params file {path}"
            keys = entry[path] if isinstance(entry, dict) and entry[path] else []
            content = yaml.safe_load(params_file.read_text())
            for key in keys:
                assert key in content, f"stage {name}: {key} not in {path}"


def test_code_deps_are_the_import_closure_of_the_entry_point():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    graph, files = import_graph(), module_files()
    for name, stage in stages().items():
        module = scripts[stage["cmd"].split()[0]].split(":")[0]
        needed = {str(files[m].relative_to(ROOT)) for m in closure(module, graph)
                  if files[m].name != "__init__.py"}
        missing = needed - set(stage["deps"])
        assert not missing, f"stage {name} imports {sorted(missing)} but does not list them"
        stale = {d for d in stage["deps"] if d.endswith(".py")} - needed
        assert not stale, f"stage {name} lists {sorted(stale)} it never imports"


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "timings" not in p.name}


@pytest.mark.slow
def test_stage_outputs_are_byte_identical_on_a_rerun(tmp_path):
    """simulate -> prepare -> train twice from scratch: every output file hashes the same,
    so a rerun never invalidates the stages downstream in dvc.lock."""
    from pipeline.simulate_cli import run_simulate
    from training.train import run_train
    from training.train_cli import prepare, train_job

    runs = []
    tmp = tmp_path / "run"  # the same paths both times, as in a checkout
    for _ in range(2):
        shutil.rmtree(tmp, ignore_errors=True)
        paths = tmp_paths(tmp)
        run_simulate(compose_config("router_simulate", [*paths, "simulate.n_courses=150"]))
        prepare_cfg = compose_config("router_prepare", paths)
        prepare.__wrapped__(prepare_cfg)
        train_cfg = compose_config("router_train", [
            *paths, f"data.examples={tmp}/data/examples.parquet",
            "train.lightgbm.n_estimators=30", f"reports_dir={tmp}/reports/train"])
        OmegaConf.resolve(train_cfg)
        run_train(train_job(train_cfg), progress=False)
        runs.append({**_digests(tmp / "data"), **_digests(tmp / "artifacts"),
                     **_digests(tmp / "reports")})
    assert runs[0].keys() == runs[1].keys()
    differ = [k for k in runs[0] if runs[0][k] != runs[1][k]]
    assert not differ, f"not byte-identical on a rerun: {differ}"


def test_stages_chain_through_their_outputs():
    s = stages()
    assert set(s["simulate"]["outs"]) & set(s["prepare"]["deps"])
    assert set(s["prepare"]["outs"]) & set(s["train"]["deps"])
    assert set(s["train"]["outs"]) & set(s["evaluate"]["deps"])
