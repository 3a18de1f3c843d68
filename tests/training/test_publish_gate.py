"""router-train publishes only a model that beats its own lookup baseline."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from training.publish_gate import lookup_log_loss, publish_gate, publish_verdict


def test_a_model_worse_than_its_lookup_is_a_candidate_and_says_why():
    verdict = publish_verdict(0.384, 0.309, publish=True, publish_if_worse=False)
    assert not verdict["published"]
    assert "0.3840 is worse than its own lookup baseline's 0.3090" in verdict["reason"]


def test_forcing_publishes_it_and_says_so():
    verdict = publish_verdict(0.384, 0.309, publish=True, publish_if_worse=True)
    assert verdict["published"] and "publish_if_worse=true" in verdict["reason"]


@pytest.mark.parametrize("model, lookup, publish, expected", [
    (0.20, 0.25, True, True), (0.20, None, True, True), (0.20, 0.25, False, False)])
def test_better_or_uncomparable_models_publish_unless_told_not_to(model, lookup, publish,
                                                                  expected):
    assert publish_verdict(model, lookup, publish, False)["published"] is expected


def test_the_lookup_log_loss_is_the_tables_on_the_held_out_rows():
    rows = pd.DataFrame({"field": ["a", "a", "b", "b"], "tier": ["t0", "t1", "t0", "t0"],
                         "label": [1, 0, 1, 1]})
    table = {"a": {"t0": 0.9, "t1": 0.2}, "b": {"t0": 0.5, "t1": 0.5}}
    loss = lookup_log_loss(table, ["t0", "t1"], rows)
    import math
    expected = -(math.log(0.9) + math.log(0.8) + 2 * math.log(0.5)) / 4
    assert loss == pytest.approx(expected)


def test_the_gate_records_its_verdict_in_the_metrics():
    rows = pd.DataFrame({"field": ["a"] * 4, "tier": ["t0"] * 4, "label": [1, 1, 1, 0]})
    metrics = {"overall": {"log_loss": 0.9}}
    train = SimpleNamespace(publish=True, publish_if_worse=False)
    assert publish_gate(train, metrics, rows, {"a": {"t0": 0.75}}, ["t0"]) is False
    assert metrics["publish"]["published"] is False
    assert metrics["publish"]["lookup_log_loss"] < 0.9
