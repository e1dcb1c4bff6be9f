"""`devstack down` leaves no process behind, and `up` brings every component back healthy.

Runs after every other test (see conftest), since it stops the stack they use.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from devstack.controlplane import PROCESSES
from devstack.layout import default_layout

pytestmark = [
    pytest.mark.devstack_lifecycle,
    pytest.mark.rabbitmq,
    pytest.mark.postgres,
    pytest.mark.k8s,
]
ERLANG_PROCESSES = {"beam.smp", "epmd", "erl_child_setup", "inet_gethost"}


def _devstack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _stack_processes() -> list[str]:
    """Live processes that belong to the stack: by their files, or by being Erlang's."""
    layout = default_layout()
    markers = (str(layout.home), str(layout.postgres_home), "/.cache/instance-service/bin/")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited while we looked
        name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
        if state == "Z":
            continue  # already dead, waiting for a parent that never reaps to do so
        if name in ERLANG_PROCESSES or any(marker in cmdline for marker in markers):
            found.append(f"{proc.name} {cmdline.strip()[:120]}")
    return found


def test_down_leaves_no_process_and_up_restores_a_healthy_stack() -> None:
    assert _stack_processes(), "the stack should be running before this test"

    stopped = _devstack("down")
    assert stopped.returncode == 0, stopped.stderr
    assert _stack_processes() == []

    started = _devstack("up")
    assert started.returncode == 0, started.stderr

    status = _devstack("status")
    assert status.returncode == 0, status.stdout
    report = {
        line.split()[0]: line.split()[1]
        for line in status.stdout.splitlines()
        if line and line.split()[0] in {"postgres", "rabbitmq", *PROCESSES}
    }
    assert report == dict.fromkeys(["postgres", "rabbitmq", *PROCESSES], "healthy")
