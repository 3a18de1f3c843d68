"""File helpers every job shares: atomic writes and content hashes."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def sha256_file(path: str | Path, h: hashlib._Hash | None = None) -> str:
    """Hex sha256 of a file's bytes (or feed them into `h` and return its digest)."""
    h = h or hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stable_hash32(values: pd.Series | Sequence[str], salt: str = "") -> np.ndarray:
    """The first 32 bits of sha256(salt + value) per value, as integers: the same on every
    machine and in every process (Python's own hash is salted per process)."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=str), use_na_sentinel=False)
    table = np.fromiter((int(hashlib.sha256(f"{salt}{v}".encode()).hexdigest()[:8], 16)
                         for v in uniques), dtype=np.int64, count=len(uniques))
    return table[codes]  # hashed once per distinct value (courses, not rows)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write through a temporary file and an atomic rename: readers see old or new, never
    half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
