"""The decision log: one JSON line per routing decision, rotated by size.

Each line joins the attempt logs through `decision.decision_id` (the generator copies it into
every attempt it makes for the task), which closes the loop logs -> retrain.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from router_model.contract import DECISION_LOG_VERSION

log = logging.getLogger("stage5_router.decision_log")


class DecisionLog:
    """Append-only JSONL, rotated by size: decisions.jsonl -> decisions.jsonl.<n>, where a
    higher n is newer; beyond `backups` files the oldest is deleted.

    Rotation costs the same whatever `backups` is: one rename and one open on the writing
    thread. Deleting the oldest backup, and counting what it held, happen on a background
    thread; `dropped` adds up the bytes and lines deleted, and lines that could not be
    written at all (a value JSON cannot carry), for /metrics.

    The file is owned here, not by a `logging` handler: a `logging.config` call elsewhere in
    the process (hydra makes one) closes every registered handler, and would silently stop
    the log. Each line is flushed to the OS as it is written (not fsynced: a power loss can
    lose the last lines; a killed process cannot).
    """

    def __init__(self, path: str | Path | None, max_bytes: int = 50_000_000,
                 backups: int = 5) -> None:
        self.path = Path(path) if path else None
        self.max_bytes = max_bytes
        self.backups = backups
        self.dropped = {"bytes": 0, "lines": 0, "unwritten_lines": 0}
        self._lock = threading.Lock()
        self._stream: TextIO | None = None
        self._size = 0
        self._backups: deque[int] = deque()
        self._next = 1
        self._doomed: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._cleaner: threading.Thread | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            prefix = f"{self.path.name}."
            numbers = sorted(int(p.name[len(prefix):]) for p in self.path.parent.iterdir()
                             if p.name.startswith(prefix) and p.name[len(prefix):].isdigit())
            self._backups.extend(numbers)
            self._next = (numbers[-1] + 1) if numbers else 1
            self._stream = self.path.open("a", encoding="utf-8")
            self._size = self.path.stat().st_size

    def _rotate(self) -> None:
        assert self.path is not None and self._stream is not None
        self._stream.close()
        backup = self.path.with_name(f"{self.path.name}.{self._next}")
        os.replace(self.path, backup)
        self._backups.append(self._next)
        self._next += 1
        while len(self._backups) > self.backups:
            self._delete_later(self.path.with_name(f"{self.path.name}.{self._backups.popleft()}"))
        self._stream = self.path.open("a", encoding="utf-8")
        self._size = 0

    def _delete_later(self, path: Path) -> None:
        if self._cleaner is None:
            self._cleaner = threading.Thread(target=self._clean, name="decision-log-cleaner",
                                             daemon=True)
            self._cleaner.start()
        self._doomed.put(path)

    def _clean(self) -> None:
        while (path := self._doomed.get()) is not None:
            try:
                size, lines = 0, 0
                with path.open("rb") as fh:
                    for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        size += len(chunk)
                        lines += chunk.count(b"\n")
                path.unlink()
            except OSError as exc:
                log.warning("could not delete old decision log %s: %s", path.name, exc)
                continue
            with self._lock:
                self.dropped["bytes"] += size
                self.dropped["lines"] += lines

    def write(self, endpoint: str, task: Mapping[str, Any], decision: dict[str, Any],
              shadow: dict[str, Any] | None = None) -> None:
        if self._stream is None:
            return
        try:
            line = json.dumps({"schema_version": DECISION_LOG_VERSION,
                               "timestamp": datetime.now(UTC).isoformat(),
                               "endpoint": endpoint, "task": task, "decision": decision,
                               "shadow": shadow}, default=str, allow_nan=False) + "\n"
        except ValueError as exc:  # NaN / Infinity somewhere: never write non-JSON
            with self._lock:
                self.dropped["unwritten_lines"] += 1
            log.warning("decision %s not logged: %s", decision.get("decision_id"), exc)
            return
        size = len(line.encode("utf-8"))
        with self._lock:
            if self._stream is None:
                return
            if self._size and self._size + size > self.max_bytes:
                self._rotate()
            self._stream.write(line)
            self._stream.flush()
            self._size += size

    def wait_for_cleanup(self) -> None:
        """Block until every deletion queued so far is done (tests, shutdown)."""
        if self._cleaner is not None:
            self._doomed.put(None)
            self._cleaner.join()
            self._cleaner = None

    def close(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None
        self.wait_for_cleanup()
