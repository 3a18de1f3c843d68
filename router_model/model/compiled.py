"""LightGBM trees compiled to native code with lleaves (LLVM), cached outside the artifact.

The artifact stays data (LightGBM's text model); compiling happens at load time, and the
object file is cached under a key made of the model text's sha256, the lleaves and llvmlite
versions and the host CPU, so a changed model, library or machine never reuses an old
object. The cache folder holds machine code that the server loads: keep it writable by
the server's user only (it is never inside the artifact folder, which others may write).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("stage5_router.compiled")
SMALL_BATCH = 256  # rows up to which one thread beats starting more (LightGBM and lleaves)
# lleaves' compiled entry point, forest(rows, out, first_row, end_row), typed to take the
# arrays' addresses as plain integers (its own type wants ctypes pointer objects), and
# called keeping the GIL: releasing it for a few microseconds of trees can cost
# milliseconds to get it back from a busy thread (see decision_ids).
_FOREST = ctypes.PYFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int)


class CompiledBooster:
    """A lleaves model: `predict` gives LightGBM's probabilities (to about 1e-15)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._threads = os.cpu_count() or 1
        self._n_features = model.num_feature()
        # The compiled function's address, for callers in C (the planner), and the same
        # function callable from Python; None when this lleaves build does not expose it.
        self.entry_address = _entry_address(model)
        self._forest = None if self.entry_address is None else _FOREST(self.entry_address)

    def predict(self, X: np.ndarray) -> np.ndarray:
        if len(X) > SMALL_BATCH:
            return self._model.predict(X, n_jobs=self._threads)
        if self._forest is None:
            return self._model.predict(X, n_jobs=1)
        return self._predict_small(X)

    def _predict_small(self, X: np.ndarray) -> np.ndarray:
        """A few rows straight through the compiled function: the call lleaves' `predict`
        makes with one thread, without its per-call conversions (about half a small
        decision's prediction time). The same function, so the same numbers."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self._n_features:
            raise ValueError(f"rows must have shape (n, {self._n_features}), not {X.shape}")
        out = np.zeros(len(X))
        self._forest(X.ctypes.data, out.ctypes.data, 0, len(X))
        return out


def _entry_address(model: Any) -> int | None:
    """The compiled function's address, when this lleaves build exposes it as the
    single-output double-precision function this module was written for; else None (the
    model then predicts through lleaves' own `predict`)."""
    entry = getattr(model, "_c_entry_func", None)
    if entry is None or not getattr(model, "use_fp64", False) or getattr(
            model, "_n_classes", None) != 1:
        return None
    return ctypes.cast(entry, ctypes.c_void_p).value


def cache_key(model_text: str) -> str:
    """What the object file depends on: the model, the compiler's versions, the CPU."""
    import llvmlite.binding as llvm

    parts = [hashlib.sha256(model_text.encode("utf-8")).hexdigest(),
             metadata.version("lleaves"), metadata.version("llvmlite"),
             llvm.get_host_cpu_name()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def compile_booster(model_text: str, cache_dir: str | Path) -> CompiledBooster:
    """Compile (or load from the cache) the model; writes go through a rename, so two
    processes compiling the same model at once never see a half-written object."""
    import lleaves

    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    key = cache_key(model_text)
    text_file, object_file = folder / f"{key}.txt", folder / f"{key}.o"
    if not text_file.exists():
        tmp = folder / f".{key}.{uuid.uuid4().hex}.txt"
        tmp.write_text(model_text, encoding="utf-8")
        os.replace(tmp, text_file)
    model = lleaves.Model(model_file=str(text_file))
    if object_file.exists():
        model.compile(cache=str(object_file))
        return CompiledBooster(model)
    tmp_object = folder / f".{key}.{uuid.uuid4().hex}.o"
    try:
        model.compile(cache=str(tmp_object))
        os.replace(tmp_object, object_file)
    finally:
        tmp_object.unlink(missing_ok=True)
    log.info("compiled the LightGBM model into %s", object_file)
    return CompiledBooster(model)


def compile_model(model: Any, cache_dir: str | Path | None) -> None:
    """Compile `model` (a `PassModel`) into `<cache_dir>/compiled` when a cache folder is
    configured (`serve.compiled_cache`, by default `paths.cache_dir`; null turns it off).
    A failure (no LLVM for this CPU, a full disk) costs speed only: the model keeps
    predicting through LightGBM, with the same numbers, and the log says why."""
    if not cache_dir:
        return
    try:
        model.compile(Path(cache_dir) / "compiled")
    except Exception as exc:
        log.warning("serving through LightGBM's own predict: compiling the trees failed "
                    "(%s: %s)", type(exc).__name__, exc)
