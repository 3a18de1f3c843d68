"""router-serve ends on a bad setting with one line naming it, exit code 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("override", "message"), [
    ("serve.port=70000", "serve.port=70000: must be in 1..65535"),
    ("serve.replica=a/b", "serve.replica='a/b'"),
    ("router.policy.epsilon=2", "router.policy.epsilon=2.0: must be in [0, 1]"),
])
def test_a_bad_setting_is_one_line_and_exit_1(override, message, tmp_path):
    exe = Path(sys.executable).parent / "router-serve"
    out = subprocess.run([str(exe), override, f"paths.data_dir={tmp_path}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"router-serve: {message}"), lines[-5:]
