"""Structured log lines: one event per line, `event key=value ...` (logfmt) or JSON.

Job outcomes must be greppable and machine-readable (system, ticket id, job id, duration), so the
fields are rendered into the message itself; with `TICKETS_LOG_FORMAT=json` each line is a JSON
object instead.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(ch in text for ch in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    if not logger.isEnabledFor(level):
        return  # e.g. one DEBUG line per webhook event: not even its message is built
    message = " ".join(
        [event, *(f"{key}={_logfmt_value(value)}" for key, value in fields.items() if value is not None)]
    )
    logger.log(level, message, extra={"event": event, "fields": fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if fields is not None:
            document["event"] = getattr(record, "event", "")
            document.update({k: v for k, v in fields.items() if v is not None})
        else:
            document["message"] = record.getMessage()
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def configure_logging(level: str | int = "INFO") -> None:
    """Root logging to stderr, logfmt-ish by default, JSON with TICKETS_LOG_FORMAT=json."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("TICKETS_LOG_FORMAT", "").lower() == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
