"""Log records become one JSON object per line, keeping the fields passed with `extra`."""

import json
import logging

from telemetry.logs import JsonFormatter


def test_record_renders_as_one_json_line_with_extra_fields() -> None:
    record = logging.LogRecord(
        name="instance_service",
        level=logging.INFO,
        pathname=__file__,
        lineno=1,
        msg="kubernetes %s",
        args=("ready",),
        exc_info=None,
    )
    record.server_version = "v1.37.2"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "kubernetes ready"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "instance_service"
    assert entry["server_version"] == "v1.37.2"
    assert entry["time"].endswith("+00:00")
    assert "args" not in entry
    assert "msg" not in entry


def test_exception_is_kept_in_the_same_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "failed", (), exc_info=__import__("sys").exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert "RuntimeError: boom" in entry["exception"]
