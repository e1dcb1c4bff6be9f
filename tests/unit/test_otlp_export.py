"""With an OTLP endpoint set, spans and metrics reach the collector over HTTP, with the
service's resource attributes. A collector stand-in on loopback receives them; the service runs
in a child process, since the global providers can be installed only once per process."""

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
from opentelemetry import trace
from instance_service import __version__
from telemetry.metrics import METRICS, configure_metrics
from telemetry.tracing import configure_tracing

tracer_provider = configure_tracing(__version__)
meter_provider = configure_metrics(__version__)
with trace.get_tracer("test").start_as_current_span("exported span"):
    METRICS.received("odoo.instance.stop.v1")
tracer_provider.shutdown()  # flushes the batch
meter_provider.shutdown()  # collects and exports once more
"""


class Collector(BaseHTTPRequestHandler):
    """Keeps each POST's path and body; answers 200 as an OTLP/HTTP collector does."""

    received: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        """Record one export request."""
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """A collector stand-in on a free loopback port: its URL and what it received."""
    received: list[tuple[str, bytes]] = []
    handler = type("Handler", (Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def _run(env: dict[str, str]) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**clean, **env}, cwd=ROOT, check=True, timeout=60
    )


def test_spans_and_metrics_are_exported_to_the_configured_endpoint(
    collector: tuple[str, list[tuple[str, bytes]]],
) -> None:
    url, received = collector
    _run({"OTEL_EXPORTER_OTLP_ENDPOINT": url, "POD_NAME": "consumer-7f9c-x2"})
    paths = {path for path, _ in received}
    assert paths == {"/v1/traces", "/v1/metrics"}
    traces = b"".join(body for path, body in received if path == "/v1/traces")
    metrics = b"".join(body for path, body in received if path == "/v1/metrics")
    assert b"exported span" in traces
    assert b"instance_service.commands.received" in metrics
    for body in (traces, metrics):
        assert b"instance-service" in body  # service.name
        assert b"consumer-7f9c-x2" in body  # k8s.pod.name from POD_NAME


def test_a_signal_specific_endpoint_exports_that_signal_only(
    collector: tuple[str, list[tuple[str, bytes]]],
) -> None:
    url, received = collector
    _run({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{url}/v1/traces"})
    assert {path for path, _ in received} == {"/v1/traces"}


def test_disabled_sdk_installs_no_provider() -> None:
    script = (
        "from instance_service import __version__\n"
        "from telemetry.metrics import configure_metrics\n"
        "from telemetry.tracing import configure_tracing\n"
        "assert configure_tracing(__version__) is None\n"
        "assert configure_metrics(__version__) is None\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    subprocess.run(
        [sys.executable, "-c", script],
        env={**clean, "OTEL_SDK_DISABLED": "true"},
        cwd=ROOT,
        check=True,
        timeout=60,
    )
