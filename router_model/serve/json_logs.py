"""JSON logs for router-serve and router-gateway (`serve_logging.format: json`).

One JSON object per line on stderr: `time`, `level`, `logger`, `message`, and for uvicorn's
access lines `client`, `method`, `path`, `status`. Nothing else is added: requests' bodies
and headers (and so any key or token) are never logged.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from router_model.config import check

FORMATS = ("text", "json")


@dataclass(frozen=True)
class LogSettings:
    """`serve_logging` in config (conf/serve_logging/default.yaml)."""

    format: str

    def __post_init__(self) -> None:
        check(self.format in FORMATS, "serve_logging.format", self.format,
              f"must be one of {FORMATS}")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                               "level": record.levelname.lower(), "logger": record.name,
                               "message": record.getMessage()}
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) \
                and len(record.args) == 5:
            client, method, path, _, status = record.args
            out.update(client=client, method=method, path=path, status=status)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def uvicorn_log_config(settings: LogSettings) -> dict[str, Any] | None:
    """uvicorn's `log_config` for the format (None: uvicorn's own, the text format)."""
    if settings.format == "text":
        return None
    handler = {"class": "logging.StreamHandler", "formatter": "json",
               "stream": "ext://sys.stderr"}
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
            "handlers": {"default": handler},
            "loggers": {name: {"handlers": ["default"], "propagate": False}
                        for name in ("uvicorn", "uvicorn.error", "uvicorn.access",
                                     "stage5_router")},
            "root": {"handlers": ["default"], "level": "WARNING"}}


def log_config(plain: dict[str, Any]) -> dict[str, Any]:
    """uvicorn.run's logging keyword for a composed config (`serve_logging`), if any."""
    from router_model.config import typed

    node = plain.get("serve_logging")
    config = uvicorn_log_config(typed(LogSettings, node, "serve_logging")) if node else None
    return {"log_config": config} if config else {}
