"""Log records become one JSON object per line, keeping the fields passed with `extra` and
naming the span and the command they were logged in."""

import json
import logging
import threading

from opentelemetry.sdk.trace import TracerProvider

from telemetry.logs import JsonFormatter, command_scope


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


def _record(message: str) -> logging.LogRecord:
    return logging.getLogger("t").makeRecord("t", logging.INFO, __file__, 1, message, (), None)


def test_a_line_names_the_span_and_the_command_it_was_logged_in() -> None:
    provider = TracerProvider()  # a local provider: the global one belongs to other tests
    with provider.get_tracer("test").start_as_current_span("work") as span:
        context = span.get_span_context()
        with command_scope("cmd-1", "odoo.instance.stop.v1", "inst-1"):
            entry = json.loads(JsonFormatter().format(_record("inside")))
    assert entry["trace_id"] == format(context.trace_id, "032x")
    assert entry["span_id"] == format(context.span_id, "016x")
    assert entry["command_id"] == "cmd-1"
    assert entry["command_type"] == "odoo.instance.stop.v1"
    assert entry["instance_id"] == "inst-1"


def test_outside_a_span_and_a_command_a_line_has_neither() -> None:
    entry = json.loads(JsonFormatter().format(_record("outside")))
    assert not {"trace_id", "span_id", "command_id", "instance_id"} & set(entry)


def test_the_command_scope_ends_with_its_block_and_stays_in_its_thread() -> None:
    seen: list[dict[str, object]] = []

    def elsewhere() -> None:
        seen.append(json.loads(JsonFormatter().format(_record("other thread"))))

    with command_scope("cmd-2", "odoo.instance.start.v1", None):
        worker = threading.Thread(target=elsewhere)
        worker.start()
        worker.join()
        inside = json.loads(JsonFormatter().format(_record("inside")))
    after = json.loads(JsonFormatter().format(_record("after")))
    assert inside["command_id"] == "cmd-2"
    assert "instance_id" not in inside  # a command about no instance names none
    assert "command_id" not in seen[0]
    assert "command_id" not in after
