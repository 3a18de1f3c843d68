"""One error style for the pipeline's commands: a user error ends on one line
`<command>: <message>` with exit code 1, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.generator.inputs import InputError, load_analysis_result

BIN = Path(sys.executable).parent


def run(command: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PROVIDER_SIM_API_KEY": "k"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([str(BIN / command), *args], capture_output=True, text=True,
                          env=env, timeout=300)


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Input files course-generate must refuse, with what the message says."""
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"topic": "caf\xe9"}'.encode("latin-1"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"course_id": "x",')
    folder = tmp_path / "folder.json"
    folder.mkdir()
    return {"not utf-8": (latin1, "not UTF-8 text"), "malformed": (broken, "not JSON"),
            "a folder": (folder, "cannot be read")}


def test_unreadable_inputs_are_input_errors(tmp_path):
    for path, message in bad_inputs(tmp_path).values():
        with pytest.raises(InputError, match=message):
            load_analysis_result(path)


@pytest.mark.parametrize("case", ["not utf-8", "malformed"])
def test_course_generate_refuses_a_bad_input_on_one_line(tmp_path, case):
    path, message = bad_inputs(tmp_path)[case]
    out = run("course-generate", str(path), f"paths.data_dir={tmp_path}/data",
              "generate.progress=false")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert out.stderr.startswith(f"course-generate: {path}: {message}")
    assert "Traceback" not in out.stderr + out.stdout


@pytest.mark.parametrize(("command", "override", "message"), [
    ("router-simulate", "simulate.quality.floor=0.95",
     "router-simulate: simulate.quality.floor, ceiling"),
    ("course-provider-sim", "provider_sim.faults.rate_limit=2",
     "course-provider-sim: provider_sim.faults="),
    ("course-generate", "provider.max_concurrency=0",
     "course-generate: provider.max_concurrency=0"),
])
def test_a_bad_setting_ends_on_one_line(tmp_path, command, override, message):
    extra = [str(Path(__file__).parents[2] / "data/examples/short.json")] \
        if command == "course-generate" else []
    out = run(command, *extra, override, f"paths.data_dir={tmp_path}/data")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in out.stderr + out.stdout
