"""The compiled planner (issue 14) plans exactly as the Python path does: for one task the
same start, probabilities and expected costs to the last bit, under both rules, with the
false-pass model or the audit's rates, isotonic or Platt calibration; a batch the same to
1e-12 (numpy's vectorised exp and log round on their own); its calibration is
numpy's interpolation at every edge; threads never mix their decisions; and without the
extension the policy decides in Python and says why. No timing is asserted."""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import replace

import numpy as np
import pytest

from router_model.decide import planner
from router_model.decide.policy import RoutingPolicy
from router_model.model.artifact import load_artifact
from router_model.model.features import flatten_task
from tests.helpers import policy_settings
from tests.router_model.model.test_artifact import _fit
from tests.router_model.model.test_compiled import _records, _tasks


@pytest.fixture(scope="module")
def compiled_cache(tmp_path_factory):
    """One cache for the module: the trained model's trees are compiled once (seconds)."""
    return tmp_path_factory.mktemp("compiled")


# A support table with thin and thick cells (and fields it lacks): planning pessimism on.
SUPPORT = {"course_title": {"gpt-oss-20b": 3, "gpt-oss-120b": 40, "qwen3-max": 5000},
           "lesson_content": {"gpt-oss-20b": 0, "gpt-oss-120b": 9000, "qwen3-max": 300},
           "exercise": {"gpt-oss-20b": 20000, "gpt-oss-120b": 200}}
PESSIMISTIC = {"support": SUPPORT, "field_lams": {"course_title": 3.0, "exercise": 0.0}}


def _policy(cfg, catalog, cache, support=None, **settings) -> RoutingPolicy:
    policy = RoutingPolicy.from_artifact_path(
        catalog, policy_settings(**settings), cfg.router.artifact,
        compiled_cache=str(cache))
    if support is not None:  # the same trees, with a support table in the manifest
        policy.artifact.manifest["support"] = support
        policy = RoutingPolicy(catalog, policy_settings(**settings), policy.artifact)
    assert policy._planner is not None, "the compiled planner was not built: make install"
    return policy


def _both_plans(policy: RoutingPolicy, task: dict) -> tuple[dict, dict]:
    """One task planned by the compiled planner and by the Python path."""
    flat = flatten_task(task)
    field = str(flat.get("field"))
    impact = float(policy.choice.impact.get(field, 5))
    prompt = float(flat.get("prompt_tokens") or 0) + float(flat.get("context_tokens") or 0)
    output = policy.choice.output_tokens([field], [float(flat.get("expected_output_tokens",
                                                            np.nan))])[0]
    flat.setdefault("expected_output_tokens", output)
    X, _ = policy.artifact.model.spec.encode_with_gaps([flat])
    compiled = policy._plan_compiled(X, [field], [prompt], [output])
    python = policy._plan_tasks(policy._predict_encoded(X), [field], [impact], [prompt],
                                [output])
    return compiled, python


@pytest.mark.parametrize("settings", [{}, {"rule": "threshold"}, {"false_pass_rate": 0.03},
                                      {"rule": "threshold", "false_pass_rate": 0.0},
                                      {"latency_usd_per_hour": 7.2, "lam": 0.5}, PESSIMISTIC,
                                      {**PESSIMISTIC, "rule": "threshold"}])
def test_one_task_planned_in_c_is_the_python_plan_to_the_last_bit(trained_router, catalog,
                                                              compiled_cache, settings):
    cfg, _ = trained_router
    policy = _policy(cfg, catalog, compiled_cache, **settings)
    starts = set()
    for task in _tasks(catalog, 150):
        compiled, python = _both_plans(policy, task)
        assert compiled["start"] == int(python["start"])
        assert compiled["p_rows"] == python["p_rows"]
        assert compiled["expected_cost"] == [float(c) for c in python["expected_cost"]]
        assert compiled["eligible"] == [bool(e) for e in python["eligible"]]
        assert compiled["required"] == python["required"]
        starts.add(compiled["start"])
    assert len(starts) > 1  # the tasks reach more than one start tier


@pytest.mark.parametrize("settings", [{}, {"rule": "threshold", "false_pass_rate": 0.03},
                                      {**PESSIMISTIC, "false_pass_rate": 0.03}])
def test_a_batch_planned_in_c_is_the_vectorised_python_plan(trained_router, catalog,
                                                            compiled_cache, settings):
    """Many tasks at once: the planner's rows and columns against numpy's arrays. numpy's
    vectorised exp and log may round the last bit differently from the C library's."""
    cfg, _ = trained_router
    policy = _policy(cfg, catalog, compiled_cache, **settings)
    tasks = _tasks(catalog, 150)
    flat = [flatten_task(t) for t in tasks]
    fields = [str(f.get("field")) for f in flat]
    impact = [float(policy.choice.impact.get(f, 5)) for f in fields]
    prompt = [float(f["prompt_tokens"]) + float(f["context_tokens"]) for f in flat]
    output = policy.choice.output_tokens(fields, [float(f.get("expected_output_tokens", np.nan))
                                            for f in flat])
    for f, out in zip(flat, output, strict=True):
        f.setdefault("expected_output_tokens", out)
    X, _ = policy.artifact.model.spec.encode_with_gaps(flat)
    compiled = policy._plan_compiled(X, fields, prompt, output)
    python = policy._plan_tasks(policy._predict_encoded(X), fields, impact, prompt, output)
    assert compiled["start"] == np.asarray(python["start"]).tolist()
    np.testing.assert_allclose(compiled["p_rows"], python["p_rows"], rtol=0, atol=1e-12)
    for c, p in zip(compiled["expected_cost"], python["expected_cost"], strict=True):
        np.testing.assert_allclose(c, p, rtol=1e-12, atol=0)
    assert [list(map(bool, e)) for e in python["eligible"]] == compiled["eligible"]
    assert np.asarray(python["required"]).tolist() == compiled["required"]


def test_calibration_is_numpys_interpolation_at_every_edge(tmp_path):
    """Thresholds placed on, between, below and above the trees' own outputs, repeated
    values and a flat stretch: the planner's probabilities are `np.interp`'s."""
    model, X = _fit("lightgbm", "isotonic")
    model.compile(tmp_path)
    compiled = model.compiled
    tier_col = 1
    codes = [0.0, 1.0, float("nan")]
    rows = np.repeat(X[:1], 3, axis=0)
    rows[:, tier_col] = codes
    raw = compiled.predict(rows)
    lo, hi = float(raw.min()), float(raw.max())
    cases = [([raw[0], raw[1], raw[2] + 1e-3], [0.1, 0.5, 0.9]),   # exactly on thresholds
             ([lo - 1.0, hi + 1.0], [0.2, 0.7]),                      # between two
             ([hi + 0.1, hi + 0.2], [0.3, 0.6]),                      # all below: first value
             ([lo - 0.2, lo - 0.1], [0.3, 0.6]),                      # all above: last value
             ([lo - 0.1, (lo + hi) / 2, hi + 0.1], [0.4, 0.4, 0.8]),  # a flat stretch
             ([lo], [0.25])]                                          # one threshold
    tiers = [(1.0, 2.0, 0.5, 100.0, 1e9)] * 3
    gate = ((0.1, 0.2), 50.0, 10.0, 0.02, 0.3, 0.0)
    ladder = [(0.1, 0.1, 0.8, 0.5)] * 3
    for xs, ys in cases:
        xs = sorted(float(x) for x in xs)
        edge_planner = planner._planner_class()(
            compiled, compiled.entry_address, X.shape[1], tier_col, codes,
            ("isotonic", xs, ys), tiers, gate, ladder, None, 1, False)
        _, p, _, _ = edge_planner.plan(np.ascontiguousarray(X[:1]), 100.0, 50.0, [0.0] * 3,
                                       None, 0.0, 0.0)
        assert p == np.interp(raw, xs, ys).tolist(), (xs, ys)


def test_a_platt_calibrated_model_plans_the_same_to_1e_12(trained_router, catalog, compiled_cache):
    """Platt scaling goes through numpy's exp on the Python path and the C library's here:
    the same formula, equal to 1e-12."""
    cfg, _ = trained_router
    policy = _policy(cfg, catalog, compiled_cache)
    platt = type("Platt", (), {"a_": -4.0, "b_": 2.0})()
    policy.artifact.model.calibrator = platt
    policy._planner = planner.build_planner(
        policy.artifact.model, catalog, policy.settings, policy.choice.cost_model.tier_constants,
        policy.choice.false_pass_model)
    for task in _tasks(catalog, 60):
        compiled, python = _both_plans(policy, task)
        assert compiled["start"] == int(python["start"])
        np.testing.assert_allclose(compiled["p_rows"], python["p_rows"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(compiled["expected_cost"], python["expected_cost"],
                                   rtol=1e-12, atol=0)


def test_wrong_arguments_raise_clean_errors_never_crash(trained_router, catalog,
                                                        compiled_cache):
    """Wrong widths, too short or missing lists (an independent audit crashed the process
    with short lists before their lengths were checked) raise ValueError."""
    cfg, _ = trained_router
    policy = _policy(cfg, catalog, compiled_cache)
    planner_ = policy._planner
    width = len(policy.artifact.model.spec.columns)
    X = np.zeros((3, width))
    with pytest.raises(ValueError, match=f"1 row\\(s\\) of {width} features, not 1 x {width - 1}"):
        planner_.plan(np.zeros((1, width - 1)), 1.0, 1.0, None, None, 0.0, 0.0)
    for short in range(4):  # each per-task list one short in turn
        lists = [[1.0] * (2 if k == short else 3) for k in range(4)]
        with pytest.raises(ValueError, match="one value per task"):
            planner_.plan_many(X, lists[0], lists[1], None, None, lists[2], lists[3])
    table = _policy(cfg, catalog, compiled_cache, false_pass_rate=0.03)._planner
    for rates in (None, [0.03, 0.03], [0.03] * 4):
        with pytest.raises(ValueError, match="one false-pass rate per tier"):
            table.plan(X[:1], 1.0, 1.0, rates, None, 0.1, 0.5)
        with pytest.raises(ValueError):
            table.plan_many(X, [1.0] * 3, [1.0] * 3, [rates] * 3, None, [0.1] * 3, [0.5] * 3)
    for penalty in ([0.1, 0.1], [0.1] * 4):
        with pytest.raises(ValueError, match="one pessimism term per tier"):
            table.plan(X[:1], 1.0, 1.0, [0.03] * 3, penalty, 0.1, 0.5)
    with pytest.raises(ValueError, match="one value per task"):
        table.plan_many(X, [1.0] * 3, [1.0] * 3, [[0.03] * 3] * 3, [[0.1] * 3] * 2,
                        [0.1] * 3, [0.5] * 3)
    assert table.plan_many(X, [1.0] * 3, [1.0] * 3, [[0.03] * 3] * 3, None, [0.1] * 3,
                           [0.5] * 3)[0] == [table.plan(X[:1], 1.0, 1.0, [0.03] * 3, None,
                                                        0.1, 0.5)[0]] * 3


def test_a_config_the_planner_cannot_take_falls_back_to_python(trained_router, catalog,
                                                               compiled_cache, caplog):
    """Retries past a C int: the policy still loads, to decide in Python, and says why."""
    cfg, _ = trained_router
    huge = replace(catalog, gate=replace(catalog.gate, retries_per_tier=2**31))
    with caplog.at_level(logging.WARNING, logger="stage5_router.planner"):
        policy = RoutingPolicy.from_artifact_path(huge, policy_settings(), cfg.router.artifact,
                                                  compiled_cache=str(compiled_cache))
    assert policy._planner is None and "cannot take this model or config" in caplog.text


def test_threads_deciding_at_once_get_their_own_decisions(trained_router, catalog, compiled_cache):
    """Each planner call works in buffers of its own: several threads deciding together
    on one policy get exactly the records one thread gets."""
    cfg, _ = trained_router
    policy = _policy(cfg, catalog, compiled_cache)
    tasks = _tasks(catalog, 200)
    expected = _records([policy.decide(t) for t in tasks])
    results: dict[int, list] = {}

    def decide_all(k: int) -> None:
        results[k] = _records([policy.decide(t) for t in tasks])

    threads = [threading.Thread(target=decide_all, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[k] == expected for k in range(4))


def test_without_the_extension_the_policy_decides_in_python_and_says_so(
        trained_router, catalog, compiled_cache, monkeypatch, caplog):
    cfg, _ = trained_router
    fast = _policy(cfg, catalog, compiled_cache)
    monkeypatch.setitem(sys.modules, "router_model.decide._planner", None)  # import fails
    with caplog.at_level(logging.WARNING, logger="stage5_router.planner"):
        assert planner._planner_class.__wrapped__() is None
    assert "the compiled planner is not built" in caplog.text
    monkeypatch.setattr(planner, "_planner_class", lambda: None)
    python = RoutingPolicy(catalog, fast.settings, fast.artifact)
    assert python._planner is None
    tasks = _tasks(catalog, 40)
    assert _records([python.decide(t) for t in tasks]) == _records([fast.decide(t)
                                                                    for t in tasks])


def test_without_compiled_trees_or_with_a_lookup_table_there_is_no_planner(
        trained_router, catalog, compiled_cache):
    cfg, _ = trained_router
    assert RoutingPolicy(catalog, policy_settings(), load_artifact(cfg.router.artifact)
                         )._planner is None  # trees not compiled
    assert RoutingPolicy(catalog, policy_settings(), None)._planner is None
    fast = _policy(cfg, catalog, compiled_cache)
    lookup = fast.variant("lookup_policy")
    assert lookup._planner is None  # the table predicts, not the trees
    tasks = _tasks(catalog, 30)
    assert [d.start_tier for d in lookup.decide_many(tasks)] == \
           [lookup.decide(t).start_tier for t in tasks]
