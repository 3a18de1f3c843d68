"""router-evaluate-seeds: its runs are independent, so running them side by side (joblib,
n_jobs=2) gives the very numbers of running them one by one."""

from __future__ import annotations

import pandas as pd
import pytest
from omegaconf import OmegaConf

from tests.helpers import compose_config


@pytest.mark.slow
def test_two_jobs_give_the_numbers_of_one(tmp_path):
    from training.evaluation.seeds_cli import run_seeds, seeds_settings

    results = {}
    for n_jobs in (1, 2):
        cfg = compose_config("router_evaluate_seeds", [
            "worlds=[default]", "seeds=[1,2]", "n_courses=150", "eval_courses=100",
            "bootstrap=20",
            # nothing published (as a model that loses to its lookup table is not): each
            # run evaluates its own model
            "train_overrides=['train.lightgbm.n_estimators=20','train.publish=false']",
            f"n_jobs={n_jobs}", f"reports_dir={tmp_path}/{n_jobs}"])
        record = OmegaConf.to_container(cfg, resolve=True)
        runs = run_seeds(seeds_settings(cfg), record, progress=False)["runs"]["default"]
        results[n_jobs] = [{k: v for k, v in r.items() if k != "seconds"} for r in runs]
    assert [r["seed"] for r in results[1]] == [1, 2]
    # equal, NaN where NaN (an upper bound the frontier never reaches)
    assert pd.DataFrame(results[2]).equals(pd.DataFrame(results[1]))


def test_a_missing_seeds_setting_names_its_key():
    from training.evaluation.seeds_cli import seeds_settings

    cfg = compose_config("router_evaluate_seeds", ["~n_jobs"])
    with pytest.raises(ValueError, match=r"router_evaluate_seeds\.n_jobs is missing"):
        seeds_settings(cfg)
