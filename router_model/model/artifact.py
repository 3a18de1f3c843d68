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

import errno
import hashlib
import json
import os
import shutil
import stat
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from router_model.cli_errors import UserError
from router_model.files import atomic_write_text, sha256_file
from router_model.model.manifest import check_manifest
from router_model.model.pass_model import ModelDataError, PassModel

ARTIFACT_SCHEMA_VERSION = 2  # 2: model as data (JSON + LightGBM text); 1 was a pickle
MODEL_FILE = "model.json"
BOOSTER_FILE = "booster.txt"
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "LATEST"
# Libraries that must match at major.minor for the model to predict the same.
PINNED_LIBRARIES = ("scikit-learn", "lightgbm", "numpy")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill", ".npy", ".npz", ".pt", ".pth")
# What a loader reads at most, per file: no artifact file makes loading take unbounded
# memory (a 600 MB manifest once cost 1.1 GB). A default-trained artifact holds a 50 KB
# manifest, a 5 KB model.json and a 0.5 MB booster; 150 trees of 255 leaves are 4 MB.
MAX_FILE_BYTES = {MANIFEST_FILE: 16_000_000, MODEL_FILE: 16_000_000,
                  BOOSTER_FILE: 64_000_000, LATEST_FILE: 4096}
MAX_MODEL_BYTES = MAX_FILE_BYTES[BOOSTER_FILE]
MAX_FOLDER_ENTRIES = 64  # files in one version folder (an artifact has four)


class ArtifactError(RuntimeError, UserError):
    """The artifact is missing, corrupt or built for another environment (a user error: a
    command that meets one ends on one line saying what to do)."""


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


def read_inside(file: Path, root: Path, limit: int) -> bytes:
    """The bytes of `file`, which must resolve (symlinks followed) inside `root`, be a regular
    file (a FIFO or a device is refused, never waited on) and hold at most `limit` bytes."""
    try:
        real = file.resolve(strict=True)
    except FileNotFoundError:
        raise ArtifactError(f"{file} does not exist; the artifact is incomplete") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long, no permission
        raise ArtifactError(f"{file} cannot be resolved ({type(exc).__name__})") from None
    if not real.is_relative_to(root.resolve()):
        raise ArtifactError(f"{file} leads outside the artifact root {root} (a symlink out "
                            "of it?); refusing to read it")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(
        os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        why = "a symlink swapped in" if exc.errno == errno.ELOOP else exc.strerror
        raise ArtifactError(f"{file} cannot be opened ({why})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactError(f"{file} is not a regular file; refusing to read it")
        if info.st_size > limit:
            raise ArtifactError(f"{file} is {info.st_size} bytes, more than the {limit} an "
                                "artifact file may hold")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while being read
        raise ArtifactError(f"{file} is more than the {limit} bytes an artifact file may hold")
    return data


def read_latest(root: str | Path) -> str | None:
    """The version LATEST names (stripped text), or None when the root has no LATEST file.
    Never blocks: a LATEST that is a FIFO or too big is an `ArtifactError`."""
    root = Path(root)
    latest = root / LATEST_FILE
    if not os.path.lexists(latest):
        return None
    raw = read_inside(latest, root, MAX_FILE_BYTES[LATEST_FILE])
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ArtifactError(f"{latest} is not UTF-8 text; write the name of a version folder "
                            "into it") from None


def resolve_version_dir(path: str | Path) -> Path:
    """A version folder as given, or the one the root's LATEST names (which must be a folder
    directly inside the root: no `..`, no absolute path, no symlink out of it)."""
    path = Path(path)
    target = read_latest(path)
    if target is None:
        return path
    latest = path / LATEST_FILE
    if not target:
        raise ArtifactError(f"{latest} is empty; write the name of a version folder into it")
    root = path.resolve()
    folder = (path / target).resolve()
    if Path(target).is_absolute() or "/" in target or "\\" in target or \
            folder.parent != root or not target.isprintable():
        raise ArtifactError(f"{latest} names {target[:80]!r}, which is not a version folder "
                            f"directly inside {path}; refusing to load it")
    return path / target


def refuse_pickles(folder: Path, root: Path | None = None) -> None:
    """An artifact folder must hold no pickle: by suffix, or by the pickle header bytes.
    Entries that are not regular files are not opened; symlinks must stay inside `root`."""
    root = root or folder
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise ArtifactError(f"{folder} cannot be listed ({exc.strerror})") from None
    if len(entries) > MAX_FOLDER_ENTRIES:
        raise ArtifactError(f"{folder} holds {len(entries)} entries, more than the "
                            f"{MAX_FOLDER_ENTRIES} a version folder may")
    for entry in entries:
        item = Path(entry.path)
        if item.suffix.lower() in PICKLE_SUFFIXES:
            raise ArtifactError(f"{item} is a pickle; artifacts hold data only (schema "
                                f"{ARTIFACT_SCHEMA_VERSION}) and a pickle could run code "
                                "when loaded. Remove it, or retrain with router-train")
        if entry.is_symlink() and not item.resolve().is_relative_to(root.resolve()):
            raise ArtifactError(f"{item} leads outside the artifact root (a symlink); "
                                "refusing to load the folder")
        if not entry.is_file():
            continue
        head = _head(item, root)
        if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
            raise ArtifactError(f"{item} is a pickle; artifacts hold data only (schema "
                                f"{ARTIFACT_SCHEMA_VERSION}) and a pickle could run code "
                                "when loaded. Remove it, or retrain with router-train")


def _head(file: Path, root: Path) -> bytes:
    """The first two bytes of a regular file inside `root` (opened without blocking)."""
    real = file.resolve()
    if not real.is_relative_to(root.resolve()):
        raise ArtifactError(f"{file} leads outside the artifact root; refusing to read it")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ArtifactError(f"{file} cannot be opened ({exc.strerror})") from None
    try:
        return os.read(fd, 2) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    finally:
        os.close(fd)


def load_artifact(path: str | Path, *, embedding_cache: str | None = None) -> RouterArtifact:
    """Load and check an artifact (a version folder, or a root with LATEST).

    Whatever the folder holds, this returns a checked artifact or raises `ArtifactError`
    saying why: files are read only inside the root, within their size caps, the manifest
    is checked against its schema (`manifest.py`), every model file against its sha256, and
    the booster's text structurally before LightGBM parses it (`booster_text.py`).
    `embedding_cache`: where brief embeddings may be cached (the caller's choice; a path
    written in the artifact is ignored, so an artifact never chooses where anything is
    written)."""
    try:
        return _load(Path(path), embedding_cache)
    except ArtifactError:
        raise
    except Exception as exc:  # anything else a crafted folder provokes is still a refusal
        raise ArtifactError(f"{path} cannot be loaded ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from None


def _load(path: Path, embedding_cache: str | None) -> RouterArtifact:
    folder = resolve_version_dir(path)
    if not folder.is_dir():
        raise ArtifactError(f"{folder} is not a router artifact (not a folder); train one "
                            "with router-train")
    manifest_path = folder / MANIFEST_FILE
    if not os.path.lexists(manifest_path):
        raise ArtifactError(f"{folder} is not a router artifact (no {MANIFEST_FILE}); "
                            "train one with router-train")
    refuse_pickles(folder, path)
    manifest, checked = _read_manifest(manifest_path, folder, path)
    texts = _read_model_files(folder, path, checked.files, manifest_path)
    try:
        model_data = json.loads(texts[MODEL_FILE])
        if not isinstance(model_data, dict):
            raise ModelDataError("not a JSON object")
        model = PassModel.from_data(model_data, texts.get(BOOSTER_FILE),
                                    embedding_cache=embedding_cache)
    except (ValueError, ModelDataError, TypeError, KeyError, RecursionError) as exc:
        raise ArtifactError(f"{folder / MODEL_FILE} does not describe a model "
                            f"({type(exc).__name__}: {str(exc)[:200]})") from exc
    if checked.feature_columns is not None and checked.feature_columns != model.spec.columns:
        raise ArtifactError(f"{manifest_path}: feature_columns do not match the model's "
                            "feature spec; the artifact was edited")
    return RouterArtifact(model=model, manifest=manifest, path=folder)


def _read_manifest(manifest_path: Path, folder: Path, root: Path
                   ) -> tuple[dict[str, Any], Any]:
    """The manifest as written and as checked: schema version, typed fields, libraries."""
    raw = read_inside(manifest_path, root, MAX_FILE_BYTES[MANIFEST_FILE])
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ArtifactError(f"{manifest_path} is corrupt ({type(exc).__name__}: "
                            f"{str(exc)[:200]}); retrain with router-train") from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != ARTIFACT_SCHEMA_VERSION or isinstance(version, bool):
        raise ArtifactError(f"{folder}: artifact schema_version={repr(version)[:40]}, this "
                            f"router reads {ARTIFACT_SCHEMA_VERSION}; retrain with router-train")
    try:
        checked = check_manifest(manifest)
    except ValueError as exc:
        raise ArtifactError(f"{manifest_path} does not match the manifest schema ({exc}); "
                            "retrain with router-train") from None
    here, built = library_versions(), checked.library_versions
    mismatched = {lib: (built.get(lib), here[lib]) for lib in PINNED_LIBRARIES
                  if _major_minor(str(built.get(lib))) != _major_minor(here[lib])}
    if mismatched:
        detail = ", ".join(f"{lib} {str(b)[:20]} (installed {h})"
                           for lib, (b, h) in mismatched.items())
        raise ArtifactError(f"{folder} was built with {detail}; retrain with router-train "
                            "or install the versions it was built with")
    if MODEL_FILE not in checked.files:
        raise ArtifactError(f"{manifest_path} lists no {MODEL_FILE}; the artifact is "
                            "incomplete")
    return manifest, checked


def _read_model_files(folder: Path, root: Path, files: dict[str, str], manifest_path: Path
                      ) -> dict[str, str]:
    """The model files the manifest lists, read inside the root and checked by sha256."""
    texts = {}
    for name in (MODEL_FILE, BOOSTER_FILE):
        if name not in files:
            continue
        file = folder / name
        data = read_inside(file, root, MAX_FILE_BYTES[name])
        if hashlib.sha256(data).hexdigest() != files[name]:
            raise ArtifactError(f"{file} does not match the sha256 in {manifest_path.name}: "
                                "the file is corrupt or was changed; retrain with router-train")
        try:
            texts[name] = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ArtifactError(f"{file} is not UTF-8 text") from exc
    return texts


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
