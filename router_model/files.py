"""File helpers every job shares: atomic writes and content hashes."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path


def sha256_file(path: str | Path, h: hashlib._Hash | None = None) -> str:
    """Hex sha256 of a file's bytes (or feed them into `h` and return its digest)."""
    h = h or hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write through a temporary file and an atomic rename: readers see old or new, never
    half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
