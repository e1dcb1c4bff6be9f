"""Liveness and readiness over HTTP for the Deployment's probes.

GET /livez   200 while the main loop keeps turning (it stalls: 503)
GET /readyz  200 only while connected to RabbitMQ and consuming
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Health:
    """What the probes report, updated by the runtime."""

    def __init__(self, stall_seconds: float = 30.0) -> None:
        self.stall_seconds = stall_seconds
        self._beat = time.monotonic()
        self._ready = threading.Event()

    def beat(self) -> None:
        """The main loop is alive."""
        self._beat = time.monotonic()

    def set_ready(self, ready: bool) -> None:
        """Connected and consuming, or not."""
        if ready:
            self._ready.set()
        else:
            self._ready.clear()

    @property
    def live(self) -> bool:
        """Whether the loop turned recently."""
        return time.monotonic() - self._beat < self.stall_seconds

    @property
    def ready(self) -> bool:
        """Whether the consumer takes work."""
        return self._ready.is_set() and self.live


def serve_health(health: Health, host: str, port: int) -> ThreadingHTTPServer:
    """Start the probe endpoint in a daemon thread; the caller shuts it down."""

    class Probe(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            checks = {"/livez": health.live, "/readyz": health.ready}
            if self.path not in checks:
                self.send_error(404)
                return
            ok = checks[self.path]
            body = b"ok\n" if ok else b"not ok\n"
            self.send_response(200 if ok else 503)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # probes every few seconds would flood the log

    server = ThreadingHTTPServer((host, port), Probe)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


@contextmanager
def health_endpoint(health: Health, host: str, port: int) -> Iterator[None]:
    """Serve the probes while the block runs, then shut them down; port 0 serves nothing."""
    server = serve_health(health, host, port) if port else None
    try:
        yield
    finally:
        if server is not None:
            server.shutdown()
