"""The decision log: one JSON line per routing decision, rotated by size.

Each line joins the attempt logs through `decision.decision_id` (the generator copies it into
every attempt it makes for the task), which closes the loop logs -> retrain.

One writer per file. Two processes appending to one JSONL file can interleave partial lines
(a buffered write of many lines is not one atomic append), and both would rotate it: each
renames the live file under its own backup number (overwriting the other's backups) and keeps
writing into the renamed file through its open handle. So replicas write one file each (the
default `serve.decision_log` holds `{replica}`), and a process that opens a file another
process is writing is refused at start-up (`DecisionLogBusy`, an advisory POSIX lock on the
live file). Readers join the files by decision id; ids are random UUIDs, unique across
replicas.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

try:
    import fcntl
except ImportError:  # not POSIX: no cross-process guard, the per-replica file names remain
    fcntl = None  # type: ignore[assignment]

from router_model.cli_errors import UserError
from router_model.contract import DECISION_LOG_VERSION

log = logging.getLogger("stage5_router.decision_log")


class DecisionLogBusy(UserError, RuntimeError):
    """Another process is writing this decision log; two writers would corrupt it."""


class DecisionLog:
    """Append-only JSONL, rotated by size: decisions.jsonl -> decisions.jsonl.<n>, where a
    higher n is newer; beyond `backups` files the oldest is deleted.

    Writing is off the request's critical path: `write` encodes the line (orjson) and queues
    it; a background thread writes what is queued every `flush_s` seconds, and `close`
    (the service's shutdown, or the interpreter's exit) writes the rest, so a clean shutdown
    loses nothing. A crash (SIGKILL, a segfault, a power loss) can lose the lines queued in
    the last `flush_s` seconds; a power loss also what the OS had not yet put on disk (the
    file is flushed to the OS, not fsynced).

    Rotation costs the same whatever `backups` is: one rename and one open on the writing
    thread. Deleting the oldest backup, and counting what it held, happen on a background
    thread; `dropped` adds up the bytes and lines deleted, and lines that could not be
    written at all (NaN or Infinity in the decision, which JSON cannot carry; the task is
    checked at the service's door), for /metrics.

    The file is owned here, not by a `logging` handler: a `logging.config` call elsewhere in
    the process (hydra makes one) closes every registered handler, and would silently stop
    the log.
    """

    def __init__(self, path: str | Path | None, max_bytes: int = 50_000_000,
                 backups: int = 5, flush_s: float = 0.2, replica: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.replica = replica  # written on every line, so merged logs say who decided
        self.max_bytes = max_bytes
        self.backups = backups
        self.flush_s = flush_s
        self.dropped = {"bytes": 0, "lines": 0, "unwritten_lines": 0}
        self._lock = threading.Lock()  # the queue and the counters
        self._io_lock = threading.Lock()  # the file: one flush at a time
        self._queued: list[bytes] = []
        self._stream: BinaryIO | None = None
        self._size = 0
        self._backups: deque[int] = deque()
        self._next = 1
        self._doomed: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._cleaner: threading.Thread | None = None
        self._closing = threading.Event()
        self._flusher: threading.Thread | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            prefix = f"{self.path.name}."
            numbers = sorted(int(p.name[len(prefix):]) for p in self.path.parent.iterdir()
                             if p.name.startswith(prefix) and p.name[len(prefix):].isdigit())
            self._backups.extend(numbers)
            self._next = (numbers[-1] + 1) if numbers else 1
            self._stream = self.path.open("ab")
            try:
                self._claim()
            except DecisionLogBusy:
                self._stream.close()
                self._stream = None
                raise
            self._size = self.path.stat().st_size
            self._flusher = threading.Thread(target=self._flush_every, name="decision-log",
                                             daemon=True)
            self._flusher.start()
            atexit.register(self.close)

    def _claim(self) -> None:
        """Lock the live file for this process (POSIX record lock: released when the process
        ends, however it ends, so a crash leaves no stale lock)."""
        if fcntl is None or self._stream is None:
            return
        try:
            fcntl.lockf(self._stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DecisionLogBusy(
                f"decision log {self.path} is being written by another process; two writers "
                "to one file interleave lines and race on rotation. Give each replica its own "
                "file: keep {replica} in serve.decision_log, and a serve.replica of its "
                "own") from None

    def _rotate(self) -> None:
        assert self.path is not None and self._stream is not None
        self._stream.close()
        backup = self.path.with_name(f"{self.path.name}.{self._next}")
        os.replace(self.path, backup)
        self._backups.append(self._next)
        self._next += 1
        while len(self._backups) > self.backups:
            self._delete_later(self.path.with_name(f"{self.path.name}.{self._backups.popleft()}"))
        self._stream = self.path.open("ab")
        self._size = 0
        try:
            self._claim()
        except DecisionLogBusy as exc:  # someone opened the new file in between: say so
            log.warning("%s", exc)

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
        """Encode one decision and queue it (the file is written by the flusher)."""
        self.write_many(endpoint, [(task, decision, shadow)])

    def write_many(self, endpoint: str, rows: Sequence[tuple[Mapping[str, Any],
                                                             dict[str, Any],
                                                             dict[str, Any] | None]]) -> None:
        """Encode the (task, decision, shadow) rows of one request and queue them: one
        timestamp (they were decided together) and one lock for the whole request."""
        if self._stream is None:
            return
        stamp = datetime.now(UTC).isoformat()
        lines, unwritten = [], 0
        for task, decision, shadow in rows:
            record = {"schema_version": DECISION_LOG_VERSION, "timestamp": stamp,
                      "replica": self.replica, "endpoint": endpoint, "task": task,
                      "decision": decision, "shadow": shadow}
            try:
                # orjson writes NaN as null: never change a value. The task was checked
                # finite at the service's door (router_model.serve.requests), so only what we
                # computed is.
                if not (_finite(decision) and _finite(shadow)):
                    raise ValueError("it holds NaN or Infinity")
                lines.append(orjson.dumps(record, default=str, option=_ORJSON_OPTIONS))
            except (ValueError, orjson.JSONEncodeError) as exc:  # e.g. a lone surrogate
                unwritten += 1
                log.warning("decision %s not logged: %s", decision.get("decision_id"), exc)
        with self._lock:
            self.dropped["unwritten_lines"] += unwritten
            self._queued.extend(lines)

    def _flush_every(self) -> None:
        while not self._closing.wait(self.flush_s):
            try:
                self.flush()
            except OSError as exc:  # a full disk: keep the lines queued, try again later
                log.warning("could not write the decision log: %s", exc)

    def flush(self) -> None:
        """Write every queued line now, rotating by size as it goes."""
        with self._io_lock:
            with self._lock:
                lines, self._queued = self._queued, []
            if self._stream is None or not lines:
                return
            try:
                self._write_lines(lines)
            except OSError:
                with self._lock:
                    self._queued[:0] = lines
                raise

    def _write_lines(self, lines: list[bytes]) -> None:
        chunk: list[bytes] = []
        for line in lines:
            if self._size and self._size + len(line) > self.max_bytes:
                self._stream.write(b"".join(chunk))
                chunk = []
                self._rotate()
            chunk.append(line)
            self._size += len(line)
        self._stream.write(b"".join(chunk))
        self._stream.flush()

    def wait_for_cleanup(self) -> None:
        """Write what is queued, then block until every deletion queued so far is done
        (tests, shutdown)."""
        self.flush()
        if self._cleaner is not None:
            self._doomed.put(None)
            self._cleaner.join()
            self._cleaner = None

    def close(self) -> None:
        """Stop the flusher, write every queued line, close the file. Safe to call twice."""
        self._closing.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        atexit.unregister(self.close)
        self.wait_for_cleanup()
        with self._io_lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None


_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def _finite(value: Any) -> bool:
    """No NaN or Infinity anywhere in a JSON-like value (floats, numpy's too). A container's
    plain floats and texts are looked at in place, only containers (and other values) are
    stacked: a decision record is one pass over its values, not one stack step each."""
    stack = [value]
    while stack:
        v = stack.pop()
        kind = type(v)
        if kind is dict:
            children: Any = v.values()
        elif kind is list or kind is tuple:
            children = v
        else:
            if (kind is float or isinstance(v, float)) and v - v != 0.0:
                return False  # NaN - NaN and inf - inf are NaN
            continue
        for child in children:
            kind = type(child)
            if kind is float:
                if child - child != 0.0:
                    return False
            elif kind is not str and child is not None:
                stack.append(child)
    return True
