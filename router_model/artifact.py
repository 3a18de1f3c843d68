"""Versioned router artifacts: atomic writes, checked loads.

Layout under the artifacts root:

    <root>/<version>/model.joblib    the PassModel (feature spec + calibrated estimator)
    <root>/<version>/manifest.json   schema version, router version, data hash, config,
                                     library versions, metrics, sha256 of model.joblib
    <root>/<version>/metrics.json
    <root>/LATEST                    name of the version to serve

A new version is written to a temporary folder, loaded back and probed, then renamed into
place; only then does LATEST move (also by atomic rename). A load that finds a wrong schema
version, other library versions, or a file whose hash does not match refuses with an
`ArtifactError` that says what to do, so a corrupt artifact never replaces a good one.
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
from router_model.model import PassModel

ARTIFACT_SCHEMA_VERSION = 1
MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "LATEST"
# Libraries whose pickles must match at major.minor for the model to load and predict the same.
PINNED_LIBRARIES = ("scikit-learn", "lightgbm", "numpy")


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
    """A version folder as given, or the one the root's LATEST names."""
    path = Path(path)
    latest = path / LATEST_FILE
    if latest.exists():
        return path / latest.read_text().strip()
    return path


def load_artifact(path: str | Path) -> RouterArtifact:
    """Load and check an artifact (a version folder, or a root with LATEST)."""
    import joblib

    folder = resolve_version_dir(path)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.exists():
        raise ArtifactError(f"{folder} is not a router artifact (no {MANIFEST_FILE}); "
                            "train one with router-train")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{manifest_path} is corrupt ({exc}); retrain with router-train"
                            ) from exc
    version = manifest.get("schema_version")
    if version != ARTIFACT_SCHEMA_VERSION:
        raise ArtifactError(f"{folder}: artifact schema_version={version!r}, this router reads "
                            f"{ARTIFACT_SCHEMA_VERSION}; retrain with router-train")
    built = manifest.get("library_versions", {})
    here = library_versions()
    mismatched = {lib: (built.get(lib), here[lib]) for lib in PINNED_LIBRARIES
                  if _major_minor(str(built.get(lib))) != _major_minor(here[lib])}
    if mismatched:
        detail = ", ".join(f"{lib} {b} (installed {h})" for lib, (b, h) in mismatched.items())
        raise ArtifactError(f"{folder} was built with {detail}; retrain with router-train "
                            "or install the versions it was built with")
    model_path = folder / MODEL_FILE
    if not model_path.exists():
        raise ArtifactError(f"{folder} has no {MODEL_FILE}; the artifact is incomplete")
    expected = manifest.get("files", {}).get(MODEL_FILE)
    if sha256_file(model_path) != expected:
        raise ArtifactError(f"{model_path} does not match the sha256 in its manifest: the file "
                            "is corrupt or was changed; retrain with router-train")
    try:
        model = joblib.load(model_path)
    except Exception as exc:  # any unpickling failure means the same thing to the caller
        raise ArtifactError(f"{model_path} cannot be loaded ({type(exc).__name__}: {exc})"
                            ) from exc
    if not isinstance(model, PassModel):
        raise ArtifactError(f"{model_path} holds a {type(model).__name__}, not a PassModel")
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
                  extra_manifest: dict[str, Any] | None = None) -> RouterArtifact:
    """Write a new version atomically, verify it loads, then point LATEST at it."""
    import joblib

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        joblib.dump(model, tmp / MODEL_FILE)
        model_sha = sha256_file(tmp / MODEL_FILE)
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
            "files": {MODEL_FILE: model_sha},
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
    atomic_write_text(root / LATEST_FILE, version)
    return load_artifact(final)
