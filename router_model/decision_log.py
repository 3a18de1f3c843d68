"""The decision log: one JSON line per routing decision, rotated by size.

Each line joins the attempt logs through `decision.decision_id` (the generator copies it into
every attempt it makes for the task), which closes the loop logs -> retrain.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DECISION_LOG_VERSION = 1


class LoggedDecision(BaseModel):
    model_config = ConfigDict(extra="allow")

    decision_id: str = Field(min_length=1)
    router_version: str
    start_tier: str
    source: Literal["learned", "rules", "exploration", "override"]
    propensity: float = Field(gt=0.0, le=1.0)
    ladder: list[str]
    pass_probabilities: dict[str, float]
    expected_costs: dict[str, float]
    fallback_reason: str | None = None


class DecisionLogRecord(BaseModel):
    """One line of the decision log (the contract tests parse lines against)."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = DECISION_LOG_VERSION
    timestamp: datetime
    endpoint: Literal["route", "route_batch"]
    task: dict[str, Any]
    decision: LoggedDecision
    shadow: LoggedDecision | None = None


class DecisionLog:
    """Append-only JSONL with size-based rotation (the standard library's handler)."""

    def __init__(self, path: str | Path | None, max_bytes: int = 50_000_000,
                 backups: int = 5) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._handler: logging.Handler | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handler = logging.handlers.RotatingFileHandler(
                self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
            self._handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, endpoint: str, task: dict[str, Any], decision: dict[str, Any],
              shadow: dict[str, Any] | None = None) -> None:
        if self._handler is None:
            return
        line = json.dumps({"schema_version": DECISION_LOG_VERSION,
                           "timestamp": datetime.now(UTC).isoformat(), "endpoint": endpoint,
                           "task": task, "decision": decision, "shadow": shadow},
                          default=str)
        record = logging.LogRecord("decisions", logging.INFO, "", 0, line, None, None)
        with self._lock:
            self._handler.emit(record)

    def close(self) -> None:
        if self._handler is not None:
            self._handler.close()
