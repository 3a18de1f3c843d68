"""Versioned router artifacts: atomic writes, checked loads.

Layout under the artifacts root:

    <root>/<version>/model.json      the PassModel as data: feature spec, calibrator arrays,
                                     estimator type (and the logistic model's parameters)
    <root>/<version>/booster.txt     LightGBM's own text model (LightGBM models only)
    <root>/<version>/manifest.json   schema version, router version, data hash, config,
                                     library versions, metrics, sha256 of every model file
    <root>/<version>/metrics.json
    <root>/LATEST                    name of the version to serve (a folder inside <root>)

Artifacts are data, never code: loading parses JSON and LightGBM's text format and never
unpickles. A folder that holds a pickle (by name or by its first bytes) is refused, so
whoever can write the artifact folder still cannot run code in the server.

A new version is written to a temporary folder, loaded back and probed, then renamed into
place; only then does LATEST move (also by atomic rename). A load that finds a wrong schema
version, other library versions, a file whose hash does not match, or a LATEST that leads
outside the root refuses with an `ArtifactError` that says what to do, so a corrupt artifact
never replaces a good one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from router_model.files import atomic_write_text, sha256_file
from router_model.model.pass_model import ModelDataError, PassModel

ARTIFACT_SCHEMA_VERSION = 2  # 2: model as data (JSON + LightGBM text); 1 was a pickle
MODEL_FILE = "model.json"
BOOSTER_FILE = "booster.txt"
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "LATEST"
# Libraries that must match at major.minor for the model to predict the same.
PINNED_LIBRARIES = ("scikit-learn", "lightgbm", "numpy")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill", ".npy", ".npz", ".pt", ".pth")
MAX_MODEL_BYTES = 500_000_000


class ArtifactError(RuntimeError):
    """The artifact is missing, corrupt or built for another environment."""


def library_versions() -> dict[str, str]:
    return {lib: metadata.version(lib) for lib in PINNED_LIBRARIES}


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])




@dataclass
class RouterArtifact:
    model: PassModel
    manifest: dict[str, Any]
    path: Path

    @property
    def router_version(self) -> str:
        return str(self.manifest["router_version"])


def resolve_version_dir(path: str | Path) -> Path:
    """A version folder as given, or the one the root's LATEST names (which must be a folder
    directly inside the root: no `..`, no absolute path, no symlink out of it)."""
    path = Path(path)
    latest = path / LATEST_FILE
    if not latest.exists():
        return path
    try:
        target = latest.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{latest} cannot be read ({type(exc).__name__}); write the "
                            "name of a version folder into it") from None
    if not target:
        raise ArtifactError(f"{latest} is empty; write the name of a version folder into it")
    root = path.resolve()
    folder = (path / target).resolve()
    if Path(target).is_absolute() or "/" in target or "\\" in target or \
            folder.parent != root:
        raise ArtifactError(f"{latest} names {target[:80]!r}, which is not a version folder "
                            f"directly inside {path}; refusing to load it")
    return path / target


def refuse_pickles(folder: Path) -> None:
    """An artifact folder must hold no pickle: by suffix, or by the pickle header bytes."""
    for item in sorted(folder.iterdir()):
        if not item.is_file():
            continue
        with item.open("rb") as fh:
            head = fh.read(2)
        if item.suffix.lower() in PICKLE_SUFFIXES or (
                len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
            raise ArtifactError(f"{item} is a pickle; artifacts hold data only (schema "
                                f"{ARTIFACT_SCHEMA_VERSION}) and a pickle could run code "
                                "when loaded. Remove it, or retrain with router-train")


def load_artifact(path: str | Path) -> RouterArtifact:
    """Load and check an artifact (a version folder, or a root with LATEST)."""
    folder = resolve_version_dir(path)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ArtifactError(f"{folder} is not a router artifact (no {MANIFEST_FILE}); "
                            "train one with router-train")
    refuse_pickles(folder)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{manifest_path} is corrupt ({str(exc)[:200]}); retrain with "
                            "router-train") from exc
    version = manifest.get("schema_version")
    if version != ARTIFACT_SCHEMA_VERSION:
        raise ArtifactError(f"{folder}: artifact schema_version={repr(version)[:40]}, this "
                            f"router reads {ARTIFACT_SCHEMA_VERSION}; retrain with router-train")
    built = manifest.get("library_versions", {})
    built = built if isinstance(built, dict) else {}
    here = library_versions()
    mismatched = {lib: (built.get(lib), here[lib]) for lib in PINNED_LIBRARIES
                  if _major_minor(str(built.get(lib))) != _major_minor(here[lib])}
    if mismatched:
        detail = ", ".join(f"{lib} {str(b)[:20]} (installed {h})"
                           for lib, (b, h) in mismatched.items())
        raise ArtifactError(f"{folder} was built with {detail}; retrain with router-train "
                            "or install the versions it was built with")
    files = manifest.get("files")
    if not isinstance(files, dict) or MODEL_FILE not in files:
        raise ArtifactError(f"{manifest_path} lists no {MODEL_FILE}; the artifact is "
                            "incomplete")
    texts = {}
    for name in (MODEL_FILE, BOOSTER_FILE):
        if name not in files:
            continue
        file = folder / name
        if not file.is_file():
            raise ArtifactError(f"{folder} has no {name}; the artifact is incomplete")
        if file.stat().st_size > MAX_MODEL_BYTES or sha256_file(file) != files[name]:
            raise ArtifactError(f"{file} does not match the sha256 in its manifest: the file "
                                "is corrupt or was changed; retrain with router-train")
        try:
            texts[name] = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ArtifactError(f"{file} is not UTF-8 text") from exc
    try:
        data = json.loads(texts[MODEL_FILE])
        model = PassModel.from_data(data, texts.get(BOOSTER_FILE))
    except (ValueError, ModelDataError, TypeError, KeyError) as exc:
        raise ArtifactError(f"{folder / MODEL_FILE} does not describe a model "
                            f"({type(exc).__name__}: {str(exc)[:200]})") from exc
    return RouterArtifact(model=model, manifest=manifest, path=folder)


def probe(artifact: RouterArtifact) -> None:
    """Predict on an all-missing row: a model that cannot do this must not be served."""
    X = np.full((1, len(artifact.model.spec.columns)), np.nan)
    p = artifact.model.predict_matrix(X)
    if not (p.shape == (1,) and np.isfinite(p).all() and 0.0 <= p[0] <= 1.0):
        raise ArtifactError(f"{artifact.path}: probe prediction {p!r} is not a probability")


def save_artifact(model: PassModel, root: str | Path, *, data_hash: str,
                  config: dict[str, Any], metrics: dict[str, Any],
                  ladder_stats: dict[str, Any] | None = None,
                  extra_manifest: dict[str, Any] | None = None,
                  publish: bool = True) -> RouterArtifact:
    """Write a new version atomically, verify it loads, then point LATEST at it (unless
    `publish` is false: a candidate that `router-promote` must accept first).

    The model is written as data (`PassModel.to_data`); one that cannot be (an estimator
    other than LightGBM or `logistic_baseline`) is refused with an `ArtifactError`.
    """
    try:
        model_data, booster_text = model.to_data()
    except ModelDataError as exc:
        raise ArtifactError(f"this model cannot be saved as an artifact: {exc}") from exc
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        (tmp / MODEL_FILE).write_text(json.dumps(model_data, indent=1, sort_keys=True,
                                                 allow_nan=False), encoding="utf-8")
        if booster_text is not None:
            (tmp / BOOSTER_FILE).write_text(booster_text, encoding="utf-8")
        shas = {name: sha256_file(tmp / name) for name in (MODEL_FILE, BOOSTER_FILE)
                if (tmp / name).exists()}
        manifest = {
            "schema_version": ARTIFACT_SCHEMA_VERSION,
            "model_kind": model.kind,
            "data_hash": data_hash,
            "feature_columns": model.spec.columns,
            "library_versions": library_versions(),
            "config": config,
            "metrics": metrics.get("overall", {}),
            "ladder_stats": ladder_stats or {},
            **(extra_manifest or {}),
            "files": shas,
        }
        # The version names the whole content (model and manifest), so a rerun on the same
        # data writes the same bytes, and any change (a recalibrated dial) is a new version.
        body = json.dumps(manifest, sort_keys=True, default=str)
        version = f"{model.kind}-{hashlib.sha256(body.encode()).hexdigest()[:12]}"
        manifest = {"router_version": version, **manifest}
        (tmp / "metrics.json").write_text(json.dumps({**metrics, "router_version": version},
                                                     indent=2))
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str))
        probe(load_artifact(tmp))
        final = root / version
        if final.exists():  # the very same model again: keep the one already in place
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if publish:
        atomic_write_text(root / LATEST_FILE, version)
    return load_artifact(final)
