"""LightGBM trees compiled to native code with lleaves (LLVM), cached outside the artifact.

The artifact stays data (LightGBM's text model); compiling happens at load time, and the
object file is cached under a key made of the model text's sha256, the lleaves and llvmlite
versions, the compile flags and the host CPU, so a changed model, library or machine never
reuses an old object. The cache folder holds machine code that the server loads: keep it
writable by the server's user only (it is never inside the artifact folder, which others
may write).

Compiling runs in a child process (`python -m router_model.model.compiled`) with a time
limit and an address-space limit, at low priority: LLVM on a large forest can take minutes
and gigabytes, and a compile that hangs or runs out of memory must cost that compile only,
never the process that serves. The parent loads the finished object from the cache, which
takes milliseconds. Forests of more than `INLINE_MAX_LEAVES` leaves are compiled without
inlining (150 trees of 255 leaves: about 13 s instead of about 4 minutes; a small forest
predicts about 25% faster inlined, so small ones keep it).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import re
import subprocess
import sys
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("stage5_router.compiled")
SMALL_BATCH = 256  # rows up to which one thread beats starting more (LightGBM and lleaves)
COMPILE_TIMEOUT_S = 300.0  # a compile that takes longer is killed (LightGBM keeps serving)
COMPILE_MEMORY_BYTES = 4 * 2**30  # the compiling child's address-space limit
INLINE_MAX_LEAVES = 20_000  # larger forests compile without inlining (minutes -> seconds)
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


def total_leaves(model_text: str) -> int:
    return sum(int(n) for n in re.findall(r"^num_leaves=(\d+)$", model_text, re.M))


def inline_for(model_text: str) -> bool:
    """Whether to inline when compiling this forest (small ones only: see the module)."""
    return total_leaves(model_text) <= INLINE_MAX_LEAVES


def cache_key(model_text: str) -> str:
    """What the object file depends on: the model, the compiler's versions and flags, the
    CPU."""
    import llvmlite.binding as llvm

    parts = [hashlib.sha256(model_text.encode("utf-8")).hexdigest(),
             metadata.version("lleaves"), metadata.version("llvmlite"),
             llvm.get_host_cpu_name(), f"inline={inline_for(model_text)}"]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def compile_booster(model_text: str, cache_dir: str | Path, *,
                    timeout_s: float = COMPILE_TIMEOUT_S,
                    memory_bytes: int = COMPILE_MEMORY_BYTES) -> CompiledBooster:
    """Compile (in a child process, or take from the cache) and load the model; writes go
    through a rename, so two processes compiling the same model at once never see a
    half-written object. Raises `TimeoutError` past `timeout_s`, `RuntimeError` when the
    child fails (out of memory included)."""
    import lleaves

    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    key = cache_key(model_text)
    text_file, object_file = folder / f"{key}.txt", folder / f"{key}.o"
    if not text_file.exists():
        tmp = folder / f".{key}.{uuid.uuid4().hex}.txt"
        tmp.write_text(model_text, encoding="utf-8")
        os.replace(tmp, text_file)
    if not object_file.exists():
        tmp_object = folder / f".{key}.{uuid.uuid4().hex}.o"
        try:
            _compile_in_child(text_file, tmp_object, inline_for(model_text), timeout_s,
                              memory_bytes)
            os.replace(tmp_object, object_file)
        finally:
            tmp_object.unlink(missing_ok=True)
        log.info("compiled the LightGBM model into %s", object_file)
    model = lleaves.Model(model_file=str(text_file))
    model.compile(cache=str(object_file))  # loads the object: no compiling here
    return CompiledBooster(model)


def _compile_in_child(text_file: Path, object_file: Path, inline: bool, timeout_s: float,
                      memory_bytes: int) -> None:
    command = [sys.executable, "-m", "router_model.model.compiled", str(text_file),
               str(object_file), "1" if inline else "0", str(int(memory_bytes))]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout_s,
                              start_new_session=True, check=False)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"compiling the trees took more than {timeout_s:g} s (killed); "
                           "raise serve.compile_timeout_s, or serve through LightGBM") from None
    if done.returncode != 0 or not object_file.exists():
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        last = lines[-1][:300] if lines else "no output"
        raise RuntimeError(f"the compiling process failed (exit {done.returncode}: {last})")


def _child_main(argv: list[str]) -> None:
    """In the child: limit memory, lower priority, compile one model into one object."""
    import resource

    text_file, object_file, inline, memory = argv
    limit = int(memory)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.nice(10)
    sys.setrecursionlimit(20_000)  # lleaves' code generator recurses once per tree level
    import lleaves

    lleaves.Model(model_file=text_file).compile(cache=object_file, finline=inline == "1")


def compile_model(model: Any, cache_dir: str | Path | None, *,
                  timeout_s: float = COMPILE_TIMEOUT_S,
                  memory_bytes: int = COMPILE_MEMORY_BYTES) -> None:
    """Compile `model` (a `PassModel`) into `<cache_dir>/compiled` when a cache folder is
    configured (`serve.compiled_cache`, by default `paths.cache_dir`; null turns it off).
    A failure (no LLVM for this CPU, a full disk, a compile past `timeout_s` or its memory
    limit) costs speed only: the model keeps predicting through LightGBM, with the same
    numbers, and the log says why."""
    if not cache_dir:
        return
    try:
        model.compile(Path(cache_dir) / "compiled", timeout_s=timeout_s,
                      memory_bytes=memory_bytes)
    except Exception as exc:
        log.warning("serving through LightGBM's own predict: compiling the trees failed "
                    "(%s: %s)", type(exc).__name__, exc)


if __name__ == "__main__":
    _child_main(sys.argv[1:])
