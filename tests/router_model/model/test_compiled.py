"""The fast decision path gives the same answers as the plain one (issue 14): trees compiled
with lleaves predict LightGBM's probabilities to 1e-9, the compiled object is cached by model
hash outside the artifact, a failed compile falls back to LightGBM, and decision records are
the same whether one task or a batch is decided, compiled or not. No timing is asserted."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pandas as pd
import pytest

from router_model.contract import EXAMPLE_TASK
from router_model.decide.policy import RoutingPolicy
from router_model.model.artifact import load_artifact
from router_model.model.compiled import SMALL_BATCH, cache_key, compile_model
from router_model.model.features import FeatureError, flatten_task, task_columns
from tests.helpers import policy_settings
from tests.router_model.model.test_artifact import _fit


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_compiled_trees_give_lightgbm_probabilities(tmp_path, method):
    model, X = _fit("lightgbm", method)
    expected = model.calibrated.predict_proba(X)[:, 1]
    tiers = ["gpt-oss-20b", "qwen3-max", "tier-never-seen"]
    plain_tiers = model.predict_tiers(X, tiers)  # > 256 rows: one predict call per tier
    plain_few = model.predict_tiers(X[:5], tiers)  # a few rows: one call for all tiers
    model.compile(tmp_path / "compiled")
    assert model.compiled is not None
    np.testing.assert_allclose(model.predict_matrix(X), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.predict_tiers(X, tiers), plain_tiers, rtol=0, atol=1e-9)
    np.testing.assert_allclose(model.predict_tiers(X[:5], tiers), plain_few, rtol=0, atol=1e-9)
    missing = np.full((3, X.shape[1]), np.nan)
    np.testing.assert_allclose(model.predict_matrix(missing),
                               model.calibrated.predict_proba(missing)[:, 1], rtol=0, atol=1e-9)


def test_a_few_rows_call_the_compiled_function_directly_with_lleaves_numbers(tmp_path):
    """The direct call (up to SMALL_BATCH rows) is lleaves' own function: bit for bit what
    lleaves' `predict` gives, for any input layout; without the entry point the model
    predicts through lleaves; a wrong width is refused, naming the width."""
    model, X = _fit("lightgbm", "isotonic")
    model.compile(tmp_path)
    booster = model.compiled
    rows = X[:SMALL_BATCH].copy()
    rows[::7, 3] = np.nan
    expected = booster._model.predict(rows, n_jobs=1)
    assert booster._forest is not None
    for layout in (rows, np.asfortranarray(rows), rows.astype(np.float32).astype(float),
                   rows[::-1][::-1], rows.tolist()):
        got = booster.predict(np.asarray(layout))
        np.testing.assert_array_equal(got, expected)
    one = booster.predict(rows[:1])
    np.testing.assert_array_equal(one, expected[:1])
    np.testing.assert_allclose(one, model.estimator.booster_.predict(rows[:1]), rtol=0,
                               atol=1e-9)
    with pytest.raises(ValueError, match=rf"\(n, {X.shape[1]}\)"):
        booster.predict(rows[:, :-1])
    booster._forest = None  # an lleaves build without the entry point this path uses
    np.testing.assert_array_equal(booster.predict(rows), expected)


def test_the_compiled_object_is_cached_by_model_hash(tmp_path):
    model, _ = _fit("lightgbm", "isotonic")
    text = model.estimator.booster_.model_to_string()
    model.compile(tmp_path)
    objects = sorted(tmp_path.glob("*.o"))
    assert [p.stem for p in objects] == [cache_key(text)]
    written = objects[0].stat().st_mtime_ns
    model.compile(tmp_path)  # loaded from the cache, not compiled again
    assert objects[0].stat().st_mtime_ns == written
    assert cache_key(text.replace("num_leaves=", "num_leaves= ")) != cache_key(text)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_a_failed_compile_keeps_lightgbm(tmp_path, caplog):
    model, X = _fit("lightgbm", "isotonic")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="stage5_router.compiled"):
        compile_model(model, blocker)
    assert model.compiled is None
    assert "compiling the trees failed" in caplog.text
    np.testing.assert_allclose(model.predict_matrix(X), model.calibrated.predict_proba(X)[:, 1],
                               rtol=0, atol=1e-12)


def _tasks(catalog, n: int = 120) -> list[dict]:
    """Tasks that reach every branch: unknown fields and categories, missing and invalid
    features, no expected output, context overflow."""
    rng = np.random.default_rng(4)
    fields = [*catalog.fields, "a-field-never-seen"]
    tasks = []
    for i in range(n):
        task = copy.deepcopy(EXAMPLE_TASK)
        task.update(field=fields[i % len(fields)], prompt_tokens=int(rng.integers(0, 60_000)),
                    context_tokens=int(rng.integers(0, 90_000)))
        if i % 3 == 0:
            task.pop("expected_output_tokens")
        if i % 5 == 0:
            task["analysis"]["domain"] = "a-domain-never-seen"
        if i % 7 == 0:
            task["analysis"].pop("complexity")
        tasks.append(task)
    return tasks


def _records(decisions) -> list[dict]:
    return [{k: v for k, v in d.to_dict().items() if k != "decision_id"} for d in decisions]


def _assert_same_records(left: list[dict], right: list[dict]) -> None:
    """Equal field by field; probabilities and costs to 1e-9 (compiled trees may sum in
    another order), everything else exactly."""
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        for key in ("pass_probabilities", "expected_costs"):
            assert a[key].keys() == b[key].keys()
            for tier in a[key]:
                assert a[key][tier] == pytest.approx(b[key][tier], rel=0, abs=1e-9)
        rest = ("pass_probabilities", "expected_costs")
        assert {k: v for k, v in a.items() if k not in rest} == \
               {k: v for k, v in b.items() if k not in rest}


@pytest.mark.parametrize(("rule", "epsilon"), [("expected_loss", 0.0), ("threshold", 0.0),
                                               ("expected_loss", 0.2)])
def test_decision_records_match_the_plain_lightgbm_path(trained_router, catalog, tmp_path,
                                                        rule, epsilon):
    cfg, _ = trained_router
    settings = policy_settings(rule=rule, epsilon=epsilon)
    tasks = _tasks(catalog)
    plain = RoutingPolicy(catalog, settings, load_artifact(cfg.router.artifact), seed=5)
    fast = RoutingPolicy.from_artifact_path(catalog, settings, cfg.router.artifact, seed=5,
                                            compiled_cache=str(tmp_path))
    assert plain.artifact.model.compiled is None and fast.artifact.model.compiled is not None
    _assert_same_records(_records(plain.decide_many(tasks)), _records(fast.decide_many(tasks)))
    one_by_one = [fast.decide(t) for t in tasks]
    plain_one = [plain.decide(t) for t in tasks]
    _assert_same_records(_records(plain_one), _records(one_by_one))
    if epsilon == 0:  # without exploration one task alone decides as it does in a batch
        _assert_same_records(_records(one_by_one), _records(fast.decide_many(tasks)))
    invalid = {**tasks[1], "analysis": {"complexity": "high"}}  # the rules answer, and say why
    _assert_same_records(_records([plain.decide(invalid)]), _records([fast.decide(invalid)]))
    forced = np.arange(20) % len(catalog.ladder)
    _assert_same_records(_records(plain.decide_many(tasks[:20], starts=forced, router="x")),
                         _records(fast.decide_many(tasks[:20], starts=forced, router="x")))


def test_many_tasks_encode_column_by_column_as_one_task_walks_its_keys(trained_router, catalog):
    """encode_columns (many tasks) and encode_with_gaps (one task's walk) give the same
    matrix and the same gaps; a non-number raises the same error, the first in task order;
    the frame encoder (codes per distinct value) gives the same rows."""
    cfg, _ = trained_router
    spec = load_artifact(cfg.router.artifact).model.spec
    tasks = _tasks(catalog)
    tasks[1] = {**tasks[1], "analysis": None}
    tasks[2] = {**tasks[2], "analysis.domain": "arts"}  # the nested domain wins
    tasks[4] = {**tasks[4], "analysis.domain": "arts", "analysis": {}}  # the flat one counts
    tasks[8] = {**tasks[8], "tier": "gpt-oss-20b", "prompt_tokens": np.float64(12.5)}
    tasks[9] = {**tasks[9], "expected_output_tokens": float("nan"), "field": None}
    flat = [flatten_task(t) for t in tasks]
    X, gaps = spec.encode_columns(task_columns(tasks, spec.wanted), len(tasks))
    walked, walked_gaps = spec.encode_with_gaps(flat)
    assert np.array_equal(X, walked, equal_nan=True) and gaps == walked_gaps
    assert np.array_equal(spec.encode(pd.DataFrame(flat)), walked, equal_nan=True)
    bad = [*tasks[:3], {**tasks[3], "context_tokens": "x", "prompt_tokens": True},
           {**tasks[4], "prompt_tokens": "y"}]
    with pytest.raises(FeatureError) as one_by_one:
        spec.encode_with_gaps([flatten_task(t) for t in bad])
    with pytest.raises(FeatureError) as columns:
        spec.encode_columns(task_columns(bad, spec.wanted), len(bad))
    assert str(columns.value) == str(one_by_one.value) == "feature prompt_tokens=True is not " \
                                                          "a number"
