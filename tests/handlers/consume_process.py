"""`instance-service consume` as a process of its own, for the faults only a process has: a
kill -9 at any instruction, and the broker or the database going away underneath it.

It is the real command line with the local stack's settings (`python -m devstack env`), the
handlers pointed at one test namespace, short retry delays, and its logs in a file per start.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from devstack.__main__ import service_env
from devstack.httpcheck import get
from devstack.layout import default_layout

READY_TIMEOUT_SECONDS = 60


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def consume_env(amqp_url: str, store_url: str, namespace: str, health_port: int) -> dict[str, str]:
    """The consumer's environment: the stack, this test's vhost, store and namespace."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("INSTANCE_SERVICE_")},
        **service_env(default_layout()),
        "INSTANCE_SERVICE_AMQP__URL": amqp_url,
        "INSTANCE_SERVICE_AMQP__HEARTBEAT_SECONDS": "10",
        "INSTANCE_SERVICE_STORE__URL": store_url,
        "INSTANCE_SERVICE_KUBERNETES__NAMESPACE": namespace,
        "INSTANCE_SERVICE_KUBERNETES__HEALTH_DEADLINE_SECONDS": "20",
        "INSTANCE_SERVICE_KUBERNETES__READY_DEADLINE_SECONDS": "60",
        "INSTANCE_SERVICE_TENANTS__BASE_DOMAIN": "odoo.test",
        "INSTANCE_SERVICE_CONSUMER__RETRY_DELAYS_SECONDS": "[0.5, 1, 2]",
        "INSTANCE_SERVICE_CONSUMER__RETRY_JITTER": "0",
        "INSTANCE_SERVICE_CONSUMER__RELAY_INTERVAL_SECONDS": "0.1",
        "INSTANCE_SERVICE_CONSUMER__HANDLER_BUDGET_SECONDS": "30",
        "INSTANCE_SERVICE_CONSUMER__SHUTDOWN_GRACE_SECONDS": "20",
        "INSTANCE_SERVICE_CONSUMER__HEALTH_HOST": "127.0.0.1",
        "INSTANCE_SERVICE_CONSUMER__HEALTH_PORT": str(health_port),
    }


@dataclass
class ConsumeProcess:
    """One consumer process at a time; `kill` is SIGKILL, `start` waits for /readyz."""

    env: dict[str, str]
    logs: Path
    health_port: int
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    _log: IO[bytes] | None = field(default=None, repr=False)

    @classmethod
    def for_test(
        cls, amqp_url: str, store_url: str, namespace: str, logs: Path
    ) -> "ConsumeProcess":
        """A consumer of this test's vhost, store and namespace (not started)."""
        port = free_port()
        logs.mkdir(parents=True, exist_ok=True)
        return cls(consume_env(amqp_url, store_url, namespace, port), logs, port)

    def start(self) -> None:
        """Start a consumer and wait until it says it is ready."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        self._close_log()
        self._log = (self.logs / f"consume-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "instance_service", "consume"],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not self.ready():
            code = self.process.poll()
            assert code is None, f"the consumer exited with {code}:\n{self.log_tail()}"
            assert time.monotonic() < deadline, f"not ready in 60 s:\n{self.log_tail()}"
            time.sleep(0.1)

    def ready(self) -> bool:
        """Whether /readyz answers 200 now."""
        status, _ = get(f"http://127.0.0.1:{self.health_port}/readyz", timeout=1)
        return status == 200

    def kill(self) -> None:
        """kill -9: no handler, no relay, no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.kills += 1

    def stop(self) -> int:
        """SIGTERM and wait; the exit code (0 on a clean shutdown)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process is not None else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        finally:
            self._close_log()

    def close(self) -> None:
        """Kill it if it still runs (a failed test), and close its log."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self._close_log()

    def pid(self) -> int:
        """The running process's id."""
        assert self.process is not None
        return self.process.pid

    def log_entries(self) -> list[dict[str, Any]]:
        """Every JSON log line of every start so far."""
        entries = []
        for path in sorted(self.logs.glob("consume-*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    entries.append(json.loads(line))
        return entries

    def log_tail(self, lines: int = 30) -> str:
        """The end of the current start's log."""
        path = self.logs / f"consume-{self.starts}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
