"""Structured logs: one JSON object per line on stderr, so collectors need no parsing rules.

Each line carries the trace and span ids of the span current where it was logged, and the
command id, type and instance id of the command being worked on (`command_scope`), so a line
leads to its trace and a trace to its lines without every call site repeating them.
"""

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from telemetry.settings import LogSettings

_COMMAND: ContextVar[dict[str, str]] = ContextVar("instance_service_command", default={})  # noqa: B039 - never mutated


@contextmanager
def command_scope(command_id: str, command_type: str, instance_id: str | None) -> Iterator[None]:
    """Name the command (and its instance) on every line logged in this block, in this thread."""
    scope = {"command_id": command_id, "command_type": command_type}
    if instance_id is not None:
        scope["instance_id"] = instance_id
    token = _COMMAND.set(scope)
    try:
        yield
    finally:
        _COMMAND.reset(token)


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
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        entry.update(_COMMAND.get())
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
