"""Artifacts are data, not code (issue 12, items 7 and 8): the model is saved as LightGBM text
and JSON arrays, loads without unpickling, predicts the same probabilities as the model that
was trained, and a folder with a pickle, or a LATEST that leads out of the root, is refused."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from router_model.model.artifact import (
    BOOSTER_FILE,
    LATEST_FILE,
    MODEL_FILE,
    ArtifactError,
    load_artifact,
    resolve_version_dir,
    save_artifact,
)
from router_model.model.features import FeatureSpec
from router_model.model.pass_model import LightGBMPassClassifier, PassModel, logistic_baseline


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "field": rng.choice(["exercise", "lesson_content", "course_title"], n),
        "tier": rng.choice(["gpt-oss-20b", "gpt-oss-120b", "qwen3-max"], n),
        "analysis.domain": rng.choice(["programming", "history", None], n),
        "prompt_tokens": rng.integers(100, 20_000, n).astype(float),
        "context_tokens": np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 9_000, n)),
        "expected_output_tokens": rng.integers(50, 3_000, n).astype(float),
        "analysis.complexity": np.where(rng.random(n) < 0.1, np.nan, rng.random(n)),
    })
    logit = (1.5 - 2.5 * frame["analysis.complexity"].fillna(0.5)
             + (frame["tier"] == "qwen3-max") * 1.5 - frame["prompt_tokens"] / 20_000)
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def _fit(kind: str, method: str) -> tuple[PassModel, np.ndarray]:
    from sklearn.calibration import CalibratedClassifierCV

    spec = FeatureSpec(categorical=("field", "tier", "analysis.domain"),
                       numeric=("prompt_tokens", "context_tokens", "expected_output_tokens",
                                "analysis.complexity"))
    train, test = _rows(3000, 0), _rows(500, 1)
    spec.fit(train)
    estimator = (LightGBMPassClassifier(n_estimators=40, num_leaves=7,
                                        categorical_features=tuple(spec.categorical_indices))
                 if kind == "lightgbm" else logistic_baseline(spec.categorical_indices))
    calibrated = CalibratedClassifierCV(estimator, method=method, cv=3, ensemble=False)
    calibrated.fit(spec.encode(train), train["label"].to_numpy())
    X_test = spec.encode(test)
    X_test[::7, 1] = np.nan  # unknown tiers score as missing
    return PassModel(spec=spec, calibrated=calibrated, kind=kind), X_test


@pytest.mark.parametrize(("kind", "method"), [("lightgbm", "isotonic"), ("lightgbm", "sigmoid"),
                                              ("logreg", "isotonic"), ("logreg", "sigmoid")])
def test_a_saved_model_is_data_and_predicts_the_same(tmp_path, kind, method):
    model, X = _fit(kind, method)
    expected = model.calibrated.predict_proba(X)[:, 1]
    np.testing.assert_allclose(model.predict_matrix(X), expected, rtol=0, atol=1e-12)
    artifact = save_artifact(model, tmp_path, data_hash="d" * 64, config={}, metrics={})
    folder = artifact.path
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [MODEL_FILE, "manifest.json", "metrics.json",
         *([BOOSTER_FILE] if kind == "lightgbm" else [])])
    for file in folder.iterdir():  # text all the way down: JSON, or LightGBM's text model
        file.read_text(encoding="utf-8")
    json.loads((folder / MODEL_FILE).read_text())
    loaded = load_artifact(tmp_path).model
    assert loaded.calibrated is None
    np.testing.assert_allclose(loaded.predict_matrix(X), expected, rtol=0, atol=1e-9)
    tiers = ["gpt-oss-20b", "qwen3-max", "tier-never-seen"]
    np.testing.assert_allclose(loaded.predict_tiers(X[:20], tiers),
                               model.predict_tiers(X[:20], tiers), rtol=0, atol=1e-9)
    np.testing.assert_allclose(loaded.raw_and_calibrated(X)[0],
                               model.raw_and_calibrated(X)[0], rtol=0, atol=1e-9)
    assert loaded.feature_importance() == pytest.approx(model.feature_importance())
    assert loaded.explain(X[:1]) == model.explain(X[:1])
    if kind == "lightgbm":
        assert len(loaded.explain(X[:1])) == 5


def test_saving_the_same_model_twice_writes_the_same_version(tmp_path):
    model, _ = _fit("lightgbm", "isotonic")
    a = save_artifact(model, tmp_path / "a", data_hash="d" * 64, config={}, metrics={})
    b = save_artifact(model, tmp_path / "b", data_hash="d" * 64, config={}, metrics={})
    assert a.router_version == b.router_version
    for name in (MODEL_FILE, BOOSTER_FILE, "manifest.json"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes()


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    model, _ = _fit("lightgbm", "isotonic")
    save_artifact(model, root, data_hash="d" * 64, config={}, metrics={})
    return root


def _copy(saved: Path, dst: Path) -> Path:
    version = resolve_version_dir(saved)
    shutil.copytree(version, dst / version.name)
    (dst / LATEST_FILE).write_text(version.name)
    return dst / version.name


class Boom:
    def __reduce__(self):  # unpickling this would run code: it must never happen
        return (Path("/nonexistent-should-never-be-created").mkdir, ())


@pytest.mark.parametrize("name", ["model.joblib", "extra.pkl", "notes.bin"])
def test_an_artifact_folder_with_a_pickle_is_refused(saved, tmp_path, name):
    folder = _copy(saved, tmp_path)
    (folder / name).write_bytes(pickle.dumps(Boom(), protocol=4))
    with pytest.raises(ArtifactError, match="is a pickle"):
        load_artifact(tmp_path)


def test_an_old_pickle_artifact_is_refused_without_unpickling(saved, tmp_path, monkeypatch):
    folder = _copy(saved, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / MODEL_FILE).unlink()
    (folder / "model.joblib").write_bytes(pickle.dumps(Boom()))
    manifest |= {"schema_version": 1, "files": {"model.joblib": "x"}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(pickle, "loads", lambda *_: pytest.fail("unpickled"))
    with pytest.raises(ArtifactError):
        load_artifact(tmp_path)


@pytest.mark.parametrize("target", ["../../../../somewhere/else", "/etc", "..", ".",
                                    "a/../../outside", "sub/version"])
def test_a_latest_pointing_outside_the_root_is_refused(saved, tmp_path, target):
    root = tmp_path / "root"
    root.mkdir()
    _copy(saved, root)
    outside = _copy(saved, tmp_path / "somewhere")  # a valid artifact, but not in the root
    (tmp_path / "somewhere" / "else").symlink_to(outside)
    (root / "sub").mkdir()
    (root / LATEST_FILE).write_text(target)
    with pytest.raises(ArtifactError, match=r"not a version folder directly inside|empty"):
        load_artifact(root)


def test_a_version_folder_symlinked_out_of_the_root_is_refused(saved, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = _copy(saved, tmp_path / "outside")
    (root / "v1").symlink_to(outside)
    (root / LATEST_FILE).write_text("v1")
    with pytest.raises(ArtifactError, match="not a version folder directly inside"):
        load_artifact(root)


@pytest.mark.parametrize("change", [
    lambda d: d.pop("calibrator"),
    lambda d: d["calibrator"].update(method="exec"),
    lambda d: d["calibrator"].update(x=[float("nan")] * len(d["calibrator"]["x"])),
    lambda d: d["spec"].update(numeric=["only_one"]),
    lambda d: d["estimator"].update(type="pickle"),
])
def test_a_tampered_model_description_is_refused_with_a_reason(saved, tmp_path, change):
    from router_model.files import sha256_file

    folder = _copy(saved, tmp_path)
    data = json.loads((folder / MODEL_FILE).read_text())
    change(data)
    (folder / MODEL_FILE).write_text(json.dumps(data))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][MODEL_FILE] = sha256_file(folder / MODEL_FILE)  # a consistent forgery
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="does not describe a model"):
        load_artifact(tmp_path)
