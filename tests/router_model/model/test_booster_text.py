"""The booster check itself (`router_model/model/booster_text.py`): a model LightGBM wrote
passes unchanged and predicts the same; each crafted booster is refused naming the
problem; the size caps hold. (What the loader and the service do with a refused booster is
in test_artifact_hostile.py and serve/test_artifact_reload_hostile.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from router_model.model import booster_text
from router_model.model.artifact import BOOSTER_FILE, resolve_version_dir
from router_model.model.booster_text import BoosterTextError, checked_model_text
from router_model.model.manifest import check_manifest
from tests.router_model.model.test_artifact_hostile import CRAFTED_BOOSTERS, _manifest, saved

__all__ = ["saved"]  # the module fixture, shared


def test_a_trained_model_passes_the_check_byte_for_byte(saved):
    import lightgbm as lgb

    text = (resolve_version_dir(saved) / BOOSTER_FILE).read_text()
    checked = checked_model_text(text, 7)
    assert checked.split("end of trees")[0] == text.split("end of trees")[0]
    X = np.random.default_rng(0).random((50, 7)) * 3
    X[::4, 3] = np.nan
    np.testing.assert_array_equal(lgb.Booster(model_str=checked).predict(X),
                                  lgb.Booster(model_str=text).predict(X))
    np.testing.assert_array_equal(lgb.Booster(model_str=checked).predict(X, pred_contrib=True),
                                  lgb.Booster(model_str=text).predict(X, pred_contrib=True))


@pytest.mark.parametrize("case", list(CRAFTED_BOOSTERS))
def test_each_crafted_booster_is_refused(saved, case):
    text = (resolve_version_dir(saved) / BOOSTER_FILE).read_text()
    with pytest.raises(BoosterTextError):
        checked_model_text(CRAFTED_BOOSTERS[case](text), 7)


def test_the_feature_width_must_match_the_spec(saved):
    text = (resolve_version_dir(saved) / BOOSTER_FILE).read_text()
    with pytest.raises(BoosterTextError, match="reads 7 features, the feature spec encodes 8"):
        checked_model_text(text, 8)


def test_model_size_caps_hold(saved, monkeypatch):
    text = (resolve_version_dir(saved) / BOOSTER_FILE).read_text()
    for cap, value, message in [("MAX_TREES", 10, "trees, more than 10"),
                                ("MAX_TOTAL_LEAVES", 50, "more than 50 leaves"),
                                ("MAX_DEPTH", 2, "deeper than 2")]:
        with monkeypatch.context() as mp:
            mp.setattr(booster_text, cap, value)
            with pytest.raises(BoosterTextError, match=message):
                checked_model_text(text, 7)


def test_the_schema_accepts_what_the_trainer_writes(saved):
    check_manifest(_manifest(saved))
