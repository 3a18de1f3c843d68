"""What every job shares about bytes: atomic writes and the one home of stable hashes.

Python's own `hash` is salted per process; everything that must give the same number on
every machine and in every run (content keys, keyed random streams, course shards and
splits) hashes with sha256 here.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def sha256_file(path: str | Path, h: hashlib._Hash | None = None) -> str:
    """Hex sha256 of a file's bytes (or feed them into `h` and return its digest)."""
    h = h or hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def text_key(text: str) -> str:
    """Hex sha256 of a text: the key of a cached embedding or file named by content."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def digest(*parts: Any) -> str:
    """Hex sha256 of the parts' canonical JSON: a stable key for structured values."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return text_key(blob)


def stable_int(*parts: Any, nbytes: int = 4) -> int:
    """An integer from the first `nbytes` of sha256 of the parts joined by "|" (little
    endian): a seed that only the parts decide."""
    key = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(key[:nbytes], "little")


def keyed_rng(*parts: Any) -> np.random.Generator:
    """A random generator seeded by the parts: reproducible, and independent of the order
    in which work is scheduled."""
    return np.random.default_rng(stable_int(*parts, nbytes=8))


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
