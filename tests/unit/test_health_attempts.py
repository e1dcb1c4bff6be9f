"""A health check turns every transport failure into a failed attempt with a readable reason."""

import socket
import threading
from collections.abc import Iterator

import pytest

from k8s.health import Route, check_health
from messages.errors import RetryableError

URL = "http://odoo-x.tenants.svc.cluster.local:8069"


class BrokenResolver:
    """The API server is unavailable."""

    def route(self, host: str, port: int) -> Route | None:
        raise RetryableError("resolve Service tenants/odoo-x: 503 Service Unavailable")


class To:
    """Routes every name to one local port."""

    def __init__(self, port: int) -> None:
        self.port = port

    def route(self, host: str, port: int) -> Route | None:
        return Route("127.0.0.1", self.port, {})


@pytest.fixture
def hangs_up() -> Iterator[int]:
    """A server that accepts and closes every connection without answering."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.recv(1024)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()


def test_a_resolver_failure_is_a_failed_attempt() -> None:
    result = check_health(URL, BrokenResolver(), request_timeout=1, deadline_seconds=0)
    assert not result.healthy
    assert result.detail.startswith("cannot resolve odoo-x.tenants.svc.cluster.local:8069")
    assert "503 Service Unavailable" in result.detail


def test_a_server_that_hangs_up_is_a_failed_attempt(hangs_up: int) -> None:
    result = check_health(URL, To(hangs_up), request_timeout=1, deadline_seconds=0)
    assert not result.healthy
    assert "RemoteDisconnected" in result.detail
