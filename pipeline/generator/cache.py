"""The response cache: a small on-disk key-value store (sqlite, stdlib), keyed by
`router_model.files.digest` of the request.

sqlite because it is atomic per write, safe across threads and processes, and needs no new
dependency; WAL mode lets several runs share one file.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class DiskCache:
    """bytes by key, in one sqlite table; counts hits and misses for the run summary."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB)")
        self._db.commit()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return bytes(row[0])

    def put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))
            self._db.commit()

    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None

    def close(self) -> None:
        with self._lock:
            self._db.close()
