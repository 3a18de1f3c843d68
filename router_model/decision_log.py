"""The decision log: one JSON line per routing decision, rotated by size.

Each line joins the attempt logs through `decision.decision_id` (the generator copies it into
every attempt it makes for the task), which closes the loop logs -> retrain.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from router_model.contract import DECISION_LOG_VERSION


class DecisionLog:
    """Append-only JSONL, rotated by size: decisions.jsonl -> .1 -> .2 ... (oldest dropped).

    The file is owned here, not by a `logging` handler: a `logging.config` call elsewhere in
    the process (hydra makes one) closes every registered handler, and would silently stop
    the log. Each line is flushed as it is written.
    """

    def __init__(self, path: str | Path | None, max_bytes: int = 50_000_000,
                 backups: int = 5) -> None:
        self.path = Path(path) if path else None
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._stream: TextIO | None = None
        self._size = 0
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = self.path.open("a", encoding="utf-8")
            self._size = self.path.stat().st_size

    def _rotate(self) -> None:
        assert self.path is not None and self._stream is not None
        self._stream.close()
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._stream = self.path.open("a", encoding="utf-8")
        self._size = 0

    def write(self, endpoint: str, task: Mapping[str, Any], decision: dict[str, Any],
              shadow: dict[str, Any] | None = None) -> None:
        if self._stream is None:
            return
        line = json.dumps({"schema_version": DECISION_LOG_VERSION,
                           "timestamp": datetime.now(UTC).isoformat(), "endpoint": endpoint,
                           "task": task, "decision": decision, "shadow": shadow},
                          default=str) + "\n"
        size = len(line.encode("utf-8"))
        with self._lock:
            if self._size and self._size + size > self.max_bytes:
                self._rotate()
            self._stream.write(line)
            self._stream.flush()
            self._size += size

    def close(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None
