"""/metrics' live gauges: rolling per-field pass probability, unknown, missing, fallback."""

from __future__ import annotations

import math

import httpx
import pytest

from router_model.contract import EXAMPLE_TASK
from router_model.serve.live_gauges import LiveGauges
from tests.helpers import metric_samples
from tests.router_model.serve.test_app import running


def decision(p: float | None, unknown: bool = False, missing: bool = False,
             fallback: str | None = None) -> dict:
    return {"start_tier": "a", "pass_probabilities": {} if p is None else {"a": p},
            "unknown_categories": {"analysis.domain": "x"} if unknown else {},
            "missing_features": ["analysis.complexity"] if missing else [],
            "fallback_reason": fallback}


def test_the_window_rolls_and_rates_count_decisions():
    gauges = LiveGauges(window=4)
    gauges.observe(["f", "f"], [decision(0.2, unknown=True), decision(0.4)])
    assert gauges.snapshot()["pass_probability"] == {"f": pytest.approx(0.3)}
    gauges.observe(["g", "g", "g", "g"], [decision(0.9, missing=True), decision(None,
                   fallback="no_model"), decision(0.7), decision(0.8)])
    snap = gauges.snapshot()
    assert snap["decisions"] == 4  # the first two fell out of the window
    assert snap["pass_probability"] == {"g": pytest.approx(0.8)}
    assert snap["unknown_category_rate"] == 0.0
    assert snap["missing_feature_rate"] == 0.25 and snap["fallback_rate"] == 0.25


def test_an_empty_window_reports_zero_rates_not_nan():
    snap = LiveGauges().snapshot()
    assert snap["decisions"] == 0 and not math.isnan(snap["fallback_rate"])


def scrape(url: str) -> dict[str, float]:
    """The router_live_* series, keyed by name and field (every series also carries the
    replica label)."""
    out = {}
    for name, labels, value in metric_samples(httpx.get(f"{url}/metrics").text):
        if name.startswith("router_live_"):
            assert labels.pop("replica"), name
            out[name + "".join(f'{{field="{v}"}}' for v in labels.values())] = value
    return out


def test_metrics_expose_the_live_gauges_over_http(trained_router, tmp_path):
    train_cfg, _ = trained_router
    with running(tmp_path, str(train_cfg.router.artifact), reload_poll_s=0,
                 gauge_window=50) as (url, _):
        odd = {**EXAMPLE_TASK, "analysis": {**EXAMPLE_TASK.get("analysis", {}),
                                            "domain": "underwater-basket-weaving"}}
        httpx.post(f"{url}/v1/route/batch", json={"tasks": [EXAMPLE_TASK] * 30 + [odd] * 10})
        live = scrape(url)
        assert live["router_live_window_decisions"] == 40
        assert live["router_live_unknown_category_ratio"] == pytest.approx(0.25)
        assert live["router_live_fallback_ratio"] == 0.0
        key = f'router_live_pass_probability{{field="{EXAMPLE_TASK["field"]}"}}'
        assert 0.0 < live[key] < 1.0
        httpx.post(f"{url}/v1/route/batch", json={"tasks": [EXAMPLE_TASK] * 50})
        assert scrape(url)["router_live_unknown_category_ratio"] == 0.0  # rolled out
