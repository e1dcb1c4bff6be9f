"""`devstack down` leaves no process behind, and `up` brings every component back healthy.

Runs after every other test (see conftest), since it stops the stack they use.
"""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.controlplane import PROCESSES
from devstack.layout import Layout, default_layout
from devstack.processes import pid_of

pytestmark = [
    pytest.mark.devstack_lifecycle,
    pytest.mark.rabbitmq,
    pytest.mark.postgres,
    pytest.mark.k8s,
]


def _devstack(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEVSTACK_HOME": str(home)} if home is not None else None
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


def _healthy(status: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return {
        line.split()[0]: line.split()[1]
        for line in status.stdout.splitlines()
        if line and line.split()[0] in {"postgres", "rabbitmq", *PROCESSES}
    }


def _live_processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, command line) of every process that is not a zombie."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited while we looked
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":  # a zombie is dead, waiting for a parent that may never reap it
            found[int(proc.name)] = (int(fields[1]), int(fields[3]), cmdline.strip())
    return found


def _ancestors(live: dict[int, tuple[int, int, str]]) -> set[int]:
    """This test's process and those that started it: the command that runs the tests may name
    the stack's home (`bash -c "DEVSTACK_HOME=... bash .ci/run"`) and is not the stack's."""
    found, pid = set(), os.getpid()
    while pid in live and pid not in found:
        found.add(pid)
        pid = live[pid][0]
    return found


def _stack_sessions() -> set[int]:
    """Each component leads its own session; its children (Erlang's helpers) share it."""
    layout = default_layout()
    sessions = set()
    for name in ("postgres", "rabbitmq", *PROCESSES):
        pid = pid_of(layout, name)
        assert pid is not None, f"{name} should be running before this test"
        sessions.add(pid)
    return sessions


def _left_behind(sessions: set[int]) -> list[str]:
    layout = default_layout()
    markers = (str(layout.home), str(layout.postgres_home))
    live = _live_processes()
    ours = _ancestors(live)
    return [
        f"{pid} {cmdline[:120]}"
        for pid, (_, session, cmdline) in live.items()
        if pid not in ours and (session in sessions or any(marker in cmdline for marker in markers))
    ]


def _epmd_listening() -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", default_layout().ports.epmd)) == 0


def test_down_leaves_no_process_and_up_restores_a_healthy_stack() -> None:
    sessions = _stack_sessions()
    assert _left_behind(sessions), "the stack's processes should be visible before down"
    assert _epmd_listening()

    stopped = _devstack("down")
    assert stopped.returncode == 0, stopped.stderr
    assert _left_behind(sessions) == []
    assert not _epmd_listening()

    started = _devstack("up")
    assert started.returncode == 0, started.stderr

    status = _devstack("status")
    assert status.returncode == 0, status.stdout
    assert _healthy(status) == dict.fromkeys(["postgres", "rabbitmq", *PROCESSES], "healthy")


def test_a_stack_comes_up_from_an_empty_home(tmp_path: Path) -> None:
    # Issue 16, item 9: a new machine's first `up` (no certificates, no data, a cluster with
    # no CRDs) must pass. The ports are the machine's, so the usual stack steps aside.
    stopped = _devstack("down")
    assert stopped.returncode == 0, stopped.stderr
    home = tmp_path / "devstack"
    empty = Layout(home=home)
    try:
        started = _devstack("up", home=home)
        assert started.returncode == 0, started.stderr[-3000:]
        status = _devstack("status", home=home)
        assert _healthy(status) == dict.fromkeys(["postgres", "rabbitmq", *PROCESSES], "healthy")
        assert (home / "kubeconfig").exists()
    finally:
        _devstack("down", home=home)
        shutil.rmtree(empty.postgres_home, ignore_errors=True)
        restored = _devstack("up")
        assert restored.returncode == 0, restored.stderr[-3000:]
