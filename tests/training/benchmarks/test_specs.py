"""Bring your own outcome table, as a new user would: a table with recorded costs and its
own split names, and a benchmark config in a config dir, both outside the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from router_model.config import CONF_DIR

CONFIG = """\
data: mine                      # under public_data
family: family
models: [{name: small}, {name: big}]   # no prices: every row records cost_usd
default_completion_tokens: 10
gate: {pass_score: 1.0}
split: {kind: given, train: [fit], test: [holdout]}
"""


def write_table(folder: Path) -> None:
    """40 prompts: the small model passes the easy family only, the big one everything.
    The last prompt of the `fit` side has a missing score."""
    rows = []
    for i in range(40):
        family = "easy" if i % 2 else "hard"
        for model, cost in (("small", 0.001), ("big", 0.02)):
            score = 1.0 if model == "big" or family == "easy" else 0.0
            rows.append({"prompt_id": f"q{i:02d}", "prompt": f"{family} question number {i}",
                         "model": model, "score": np.nan if (i, model) == (29, "big")
                         else score, "family": family, "cost_usd": cost,
                         "split": "holdout" if i >= 30 else "fit"})
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(folder / "long.parquet", index=False)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["config-dir", "searchpath"])
def test_a_users_table_and_config_from_outside_the_checkout(tmp_path, how):
    assert not tmp_path.resolve().is_relative_to(Path(CONF_DIR).parent)
    write_table(tmp_path / "data" / "mine")
    (tmp_path / "my_conf" / "benchmark").mkdir(parents=True)
    (tmp_path / "my_conf" / "benchmark" / "mine.yaml").write_text(CONFIG)
    where = ["--config-dir", "my_conf"] if how == "config-dir" else [
        f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]"]
    command = [str(Path(sys.executable).parent / "router-benchmark"), *where, "run=[mine]",
               "public_data=data", "reports_dir=out/reports", "bootstrap=20",
               "learned_routers=[lookup-family,knn-embed]", "gate_error_rates=[0.0]",
               "operating_point.inner_folds=2", f"paths.cache_dir={tmp_path / 'cache'}"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "out" / "reports" / "mine"
    assert f"-> {folder}/" in done.stdout
    assert f"combined table: {tmp_path / 'out' / 'reports' / 'summary.md'}" in done.stdout
    assert "1 prompts have a missing" in done.stderr
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["prompts"] == 10 and metrics["dropped"]["prompts with a missing score"] == 1
    single = metrics["single_call"]
    assert single["always-big"]["cost_per_prompt"]["value"] == pytest.approx(0.02)
    # the lookup learns "easy -> small" on the fit side: full quality at (5 x 0.001 +
    # 5 x 0.02) / 10 per held-out prompt, i.e. 47.5% cheaper than always-big
    lookup = single["lookup-family"]
    assert lookup["op100pct_quality_vs_premium"]["value"] == pytest.approx(1.0)
    assert lookup["op100pct_saved_vs_premium"]["value"] == pytest.approx(0.475)
    report = (folder / "report.md").read_text()
    assert "| always-small |" in report and "| ladder-from-cheapest |" in report
    assert "| mine | lookup-family |" in (folder.parent / "summary.md").read_text()
