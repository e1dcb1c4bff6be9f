"""Starts the stack's daemons detached, remembers them by pid file, and stops them for good."""

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path

from devstack.layout import LOOPBACK, Layout


class StackError(Exception):
    """A component could not be started, configured or stopped; the message says which and why."""


def pid_of(layout: Layout, name: str) -> int | None:
    """The pid of a running component, or None.

    A pid file holds the pid and the process's start time; a pid the kernel has since given to
    another process (the stack was killed, the machine lived on) does not count as ours.
    """
    path = layout.run / f"{name}.pid"
    try:
        pid_text, started = path.read_text().split()
        pid = int(pid_text)
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) and _start_time(pid) == started else None


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def _alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie whose parent is gone still answers signal 0; it is not running.
    stat = Path(f"/proc/{pid}/stat")
    try:
        return not stat.read_text().split(") ", 1)[-1].startswith("Z")
    except FileNotFoundError:
        return False


def _reap(pid: int) -> None:
    """Collect the exit status of a child that ended, so it leaves no zombie."""
    # Not our child: its own parent (or init) reaps it.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def launch_argv(
    argv: Sequence[str], *, user: str | None = None, cwd: Path | None = None
) -> list[str]:
    """The command line `start` runs for `argv` (as `user`, in `cwd`)."""
    if user is not None:
        # setpriv execs in place (no extra parent), so the pid we keep is the daemon's own.
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]
    command = list(argv)
    if cwd is not None:
        command = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", str(cwd), *command]
    return command


def start(
    layout: Layout,
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> int:
    """Start `argv` in its own session, logging to logs/<name>.log; return its pid.

    posix_spawn rather than Popen: a daemon outlives this call, and a Popen object dropped
    while its child runs is a resource leak as far as Python is concerned.
    """
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.run.mkdir(parents=True, exist_ok=True)
    log_path = layout.logs / f"{name}.log"
    command = launch_argv(argv, user=user, cwd=cwd)
    pid = os.posix_spawnp(
        command[0],
        command,
        {**_base_env(), **(env or {})},
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,  # its own session and process group, so `stop` reaches its children too
    )
    (layout.run / f"{name}.pid").write_text(f"{pid} {_start_time(pid)}\n")
    (layout.run / f"{name}.argv").write_text(json.dumps(command))
    return pid


def started_with(layout: Layout, name: str) -> list[str] | None:
    """The command line a running component was started with (None: unknown)."""
    path = layout.run / f"{name}.argv"
    try:
        argv = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return [str(arg) for arg in argv] if isinstance(argv, list) else None


def _base_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "HOME")
    return {key: os.environ[key] for key in keep if key in os.environ}


def stop(
    layout: Layout, name: str, *, grace_seconds: float = 20.0, sig: int = signal.SIGTERM
) -> bool:
    """Signal a component's process group and wait for it to exit; return whether it ran."""
    pid = pid_of(layout, name)
    pid_file = layout.run / f"{name}.pid"
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    _signal_group(pid, sig)
    if not wait_until(lambda: not _alive(pid), grace_seconds):
        _signal_group(pid, signal.SIGKILL)
        if not wait_until(lambda: not _alive(pid), 5.0):
            raise StackError(f"{name} (pid {pid}) did not exit after SIGKILL")
    pid_file.unlink(missing_ok=True)
    return True


def _signal_group(pid: int, sig: int) -> None:
    # Every component leads its own process group (setsid at start); signal the group so its
    # children go too, but never a group that is not the one this pid leads.
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    """Call `condition` until it is true or `timeout` seconds pass; return its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(layout: Layout, name: str, lines: int = 15) -> str:
    """The last lines of a component's log, for error messages."""
    path = layout.logs / f"{name}.log"
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in text) + f"\n    (full log: {path})"


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    what: str,
    hidden: Collection[str] = (),
) -> str:
    """Run a short command to completion; raise StackError with its output if it fails.

    Each of `hidden` (passwords in the arguments or on stdin) is masked in the error: tools echo
    their arguments or input when they fail, and the error reaches logs and CI output.
    """
    try:
        result = subprocess.run(
            list(argv),
            input=stdin,
            env={**_base_env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        # `from None`: a timeout's own message (and so a chained traceback) lists the arguments.
        raise StackError(_masked(f"{what}: {error}", hidden)) from None
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise StackError(_masked(f"{what} failed (exit {result.returncode}): {output}", hidden))
    return result.stdout


def _masked(text: str, hidden: Collection[str]) -> str:
    for secret in sorted(hidden, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "<hidden>")
    return text


def ensure_port_free(port: int, what: str) -> None:
    """Fail clearly when another program already holds a port a component is about to bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError as error:
            raise StackError(
                f"{what} needs {LOOPBACK}:{port}, but another program holds it ({error.strerror}); "
                "stop that program (a system service started by the package?) and run up again"
            ) from error


@contextlib.contextmanager
def exclusive(layout: Layout) -> Iterator[None]:
    """One `up` or `down` at a time on a layout; a second one waits for the first."""
    layout.run.mkdir(parents=True, exist_ok=True)
    with (layout.run / "devstack.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
