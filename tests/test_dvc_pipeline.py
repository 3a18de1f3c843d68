"""dvc.yaml stays true: every stage's command is an installed entry point, every dependency
and params file exists, and the stages chain simulate -> prepare -> train -> evaluate."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

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


def test_stages_chain_through_their_outputs():
    s = stages()
    assert set(s["simulate"]["outs"]) & set(s["prepare"]["deps"])
    assert set(s["prepare"]["outs"]) & set(s["train"]["deps"])
    assert set(s["train"]["outs"]) & set(s["evaluate"]["deps"])
