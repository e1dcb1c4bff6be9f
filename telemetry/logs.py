"""Structured logs: one JSON object per line on stderr, so collectors need no parsing rules."""

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from telemetry.settings import LogSettings

# Attributes every LogRecord has; anything else was passed through `extra=` and is kept.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as a single JSON line with its `extra` fields at top level."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: LogSettings) -> None:
    """Send every logger's records to stderr as JSON lines at the configured level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # pika logs each step of a failed connection as an ERROR of its own; the service reports
    # the failure once, with the cause. pika's records remain available at DEBUG.
    logging.getLogger("pika").setLevel(
        logging.DEBUG if settings.level == "DEBUG" else logging.CRITICAL
    )
