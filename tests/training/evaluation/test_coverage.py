"""router-guarantee-coverage: a real run at a tiny size, end to end through its CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_a_tiny_coverage_run_realizes_every_deployment(tmp_path):
    """Two deployments of 200 courses, trained without publishing (as a model that loses to
    its lookup table stays unpublished): each deployment realizes its own model, not
    whatever LATEST names."""
    run = subprocess.run(
        [sys.executable, "-c",
         "from training.evaluation.coverage_cli import main; main()",
         "deployments=2", "n_courses=200", "eval_courses=100", "epsilon=0.3",
         "audit_courses=200",
         "train_overrides=['train.lightgbm.n_estimators=20','train.publish=false']",
         f"reports_dir={tmp_path}/coverage", f"paths.data_dir={tmp_path}/data",
         f"paths.artifacts_dir={tmp_path}/artifacts", f"paths.cache_dir={tmp_path}/cache",
         f"paths.reports_dir={tmp_path}/reports"],
        capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((tmp_path / "coverage" / "metrics.json").read_text())
    assert [r["seed"] for r in result["runs"]] == [100, 101]
    for r in result["runs"]:
        assert r["labelled_courses"] > 0
        assert ("guaranteed" in r) == r["certified"]
        for key in ("static", "point"):
            assert r[key]["cost_per_course"] > 0 and 0 < r[key]["weighted_true_pass"] <= 1
    assert result["certified"] == sum(r["certified"] for r in result["runs"])
    assert math.isnan(result["coverage"]) == (result["certified"] == 0)
    assert f"{result['certified']} of 2 deployments certified" in run.stdout
    assert f"Reports in {tmp_path}/coverage/metrics.json" in run.stdout
