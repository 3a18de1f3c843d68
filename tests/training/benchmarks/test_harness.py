"""The public-benchmark harness: the adapter on synthetic tables, and a small real slice of
each benchmark through the same code (skipped when ../shared is absent)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from tests.helpers import SHARED_DATA, compose_config, tmp_paths
from training.benchmarks.cli import benchmark_job, benchmark_spec
from training.benchmarks.data import build_table, folds
from training.benchmarks.harness import CrossFit, run_benchmark, single_call_row

DEFAULTS = OmegaConf.to_container(compose_config("router_benchmark").spec_defaults)
TOY = {"data": "toy",
    "name": "toy", "include": {"source_dataset": ["a"]}, "exclude_contaminated": True,
    "family": "subtask", "default_completion_tokens": 10,
    "models": [{"name": "small", "price_in_per_m": 1.0, "price_out_per_m": 2.0},
               {"name": "big", "price_in_per_m": 10.0, "price_out_per_m": 20.0}],
    "gate": {"pass_score": 1.0, "pass_score_by_metric": {"f1": 0.5}},
    "split": {"kind": "kfold", "folds": 2, "seed": 0}}
SPEC = benchmark_spec(TOY, DEFAULTS)


def toy_long() -> pd.DataFrame:
    rows = []
    for i in range(6):
        for model, score in (("small", 0.6 if i % 2 else 1.0), ("big", 1.0)):
            rows.append({"prompt_id": f"p{i}", "prompt": f"question {i}", "model": model,
                         "score": score, "source_dataset": "a", "subtask": f"s{i % 3}",
                         "contaminated": i == 5, "metric": "f1" if i == 3 else "em",
                         "prompt_tokens_est": 100.0, "completion_tokens_est": np.nan,
                         "split": "test" if i < 2 else "train"})
    rows.append({**rows[0], "prompt_id": "p9", "model": "small"})  # no "big" row: dropped
    rows.append({**rows[0], "prompt_id": "p8", "source_dataset": "b"})  # filtered out
    return pd.DataFrame(rows)


def test_adapter_filters_pivots_and_prices():
    table = build_table(SPEC, toy_long())
    assert table.prompts["prompt_id"].tolist() == ["p0", "p1", "p2", "p3", "p4"]
    assert table.dropped == {"not source_dataset in ['a']": 1, "contaminated rows": 2,
                             "prompts without every model": 1}
    # exact match needs 1.0; the f1 prompt (p3) passes at 0.6 >= 0.5
    assert table.passed[:, 0].tolist() == [True, False, True, True, True]
    assert table.cost[0].tolist() == pytest.approx([(100 * 1 + 10 * 2) / 1e6,
                                                    (100 * 10 + 10 * 20) / 1e6])
    assert table.prompts["family"].tolist() == ["s0", "s1", "s2", "s0", "s1"]


def test_split_protocols_never_put_a_prompt_on_both_sides():
    table = build_table(SPEC, toy_long())
    for train, test in folds(table, {"kind": "kfold", "folds": 2, "seed": 0}):
        assert not set(train) & set(test)
    (train, test), = folds(table, {"kind": "given"})
    assert table.prompts["split"].iloc[test].eq("test").all() and len(test) == 2
    with pytest.raises(ValueError, match="models \\['huge'\\] are not in the table"):
        build_table(benchmark_spec({**TOY, "models": [{"name": "huge"}, {"name": "big"}]},
                                   DEFAULTS), toy_long())


def test_single_call_metrics_by_hand():
    table = build_table(SPEC, toy_long())
    idx = np.arange(table.n)
    fit = CrossFit(probs={})
    oracle = single_call_row("oracle", fit, table, idx)
    # the weak model scores 0.6 on p1 and p3 and 1.0 elsewhere; the strong one 1.0 always.
    # The gap (0.16 of mean score) is half closed by sending one prompt (20%) to the strong
    # model and fully by two (40%); APGR = area under that PGR curve.
    assert oracle["cpt50"] == pytest.approx(0.2) and oracle["cpt80"] == pytest.approx(0.4)
    premium = single_call_row("always-big", fit, table, idx)
    assert premium["cost_per_prompt"] == pytest.approx(table.cost[:, 1].mean())
    # the ladder tries small first and pays for big only where small fails the gate (p1);
    # on p3 small's 0.6 passes the f1 gate, so that prompt keeps 0.6
    ladder = single_call_row("ladder-from-cheapest", fit, table, idx)
    assert ladder["mean_score"] == pytest.approx((4 * 1.0 + 0.6) / 5)
    assert ladder["cost_per_prompt"] == pytest.approx((table.cost[:, 0].sum()
                                                       + table.cost[1, 1]) / table.n)


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data/public_routing is absent")
@pytest.mark.parametrize("name", ["routellm_mmlu", "routellm_gsm8k", "routellm_mtbench",
                                  "llmrouter_3tier"])
@pytest.mark.slow
def test_a_small_slice_of_each_benchmark_runs_end_to_end(name, tmp_path):
    cfg = compose_config("router_benchmark", [
        *tmp_paths(tmp_path), f"public_data={SHARED_DATA}", "max_prompts=160",
        "bootstrap=20", f"run=[{name}]",
        # a slice checks the protocol, not the models: small forests keep it to seconds
        "train.lightgbm.n_estimators=40", "train.cv_folds=2", "gate_error_rates=[0.0]"])
    OmegaConf.resolve(cfg)
    job = benchmark_job(cfg)
    (spec,) = job.specs
    result = run_benchmark(job, spec, progress=False)
    single = result["single_call"]
    assert set(single) >= {"random", "lookup-family", "knn-embed", "logreg-embed",
                           "lgbm-tabular", "lgbm-tabular+embed", "lgbm-stacked", "oracle",
                           "ladder-from-cheapest"} | {
        f"always-{m.split('/')[-1]}" for m in result["models"]}
    # each router's cost is at its own operating point (not the cheapest point of its curve,
    # which was the same always-cheap cost for every router), between the fixed extremes
    costs = {r: single[r]["cost_per_prompt"]["value"] for r in cfg.learned_routers}
    assert len(set(costs.values())) > 1, costs
    lowest = single[f"always-{result['models'][0].split('/')[-1]}"]["cost_per_prompt"]
    highest = single[f"always-{result['models'][-1].split('/')[-1]}"]["cost_per_prompt"]
    assert all(lowest["value"] <= c <= highest["value"] + 1e-12 for c in costs.values())
    if len(spec.models) == 2:  # a random ranking recovers about half the gap
        assert 0.2 < single["random"]["apgr"]["value"] < 0.8
    ladder = result["ladder"]["0.0"]
    assert ladder["ladder-from-cheapest"]["calls_per_prompt"] >= 1.0
    for router, m in ladder["chosen"].items():  # with a perfect gate, starting at the
        # cheapest model tries every model, so no start can truly pass more often
        assert m["true_pass_rate"] <= ladder["ladder-from-cheapest"]["true_pass_rate"], router
        assert 1.0 <= m["calls_per_prompt"] <= len(result["models"]), router
    if spec.split["kind"] == "given":  # only the source's test prompts are scored
        assert result["prompts"] < 160
    folder = tmp_path / "reports" / "benchmarks" / name
    assert json.loads((folder / "metrics.json").read_text())["name"] == name
    report = (folder / "report.md").read_text()
    assert "ladder-from-cheapest" in report and "lgbm-tabular" in report
