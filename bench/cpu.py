"""Where the machine's CPU went during a measured window, by the part of the stack that spent it.

The provision benchmark shares the machine's cores with the control plane that carries each
provision out (the API server, the controllers, etcd, the scheduler, kwok) and with the broker
and the database. Whether the consumer or the machine bounds a run shows in these figures: the
core-seconds each part used between two snapshots of /proc, and how busy all cores were.
A process's own time only (not its reaped children's), so nothing is counted twice.
"""

import os
from dataclasses import dataclass
from pathlib import Path

ROLES = (
    ("kube-apiserver", "API server"),
    ("kube-controller-manager", "controller-manager"),
    ("kube-scheduler", "scheduler"),
    ("etcd", "etcd"),
    ("kwok", "kwok"),
    ("postgres", "PostgreSQL"),
    ("beam.smp", "RabbitMQ"),
    ("devstack.", "devstack stand-ins"),
)
"""A process's role by the start of its program's name, or (for Python) the module it runs:
the first match; the benchmark process itself is the consumer (it runs the consumer in
process); anything else is "other"."""
CONSUMER = "consumer (this process)"
OTHER = "other (kernel threads, tools)"

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    """CPU seconds used so far by each live process (by pid), and when it was taken."""

    seconds: dict[int, tuple[str, float]]
    uptime: float


def snapshot() -> Snapshot:
    """Every process's CPU seconds now."""
    used: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
        used[int(entry.name)] = (_role(int(entry.name), command), seconds)
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return Snapshot(used, uptime)


def spent(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Core-seconds by role between two snapshots (a process that ended meanwhile is missed;
    one that started is counted from zero); plus "wall" and "cores" (how many were busy)."""
    by_role: dict[str, float] = {}
    for pid, (role, seconds) in after.seconds.items():
        earlier = before.seconds.get(pid)
        used = seconds - (earlier[1] if earlier is not None and earlier[0] == role else 0)
        by_role[role] = by_role.get(role, 0.0) + used
    wall = after.uptime - before.uptime
    ordered = dict(sorted(by_role.items(), key=lambda item: -item[1]))
    return {**ordered, "wall": wall, "cores": sum(by_role.values()) / wall if wall else 0.0}


def table(figures: dict[str, float], per: int, unit: str) -> list[str]:
    """The figures as lines: core-seconds, share and milliseconds per `unit` of each role."""
    roles = {k: v for k, v in figures.items() if k not in ("wall", "cores")}
    total = sum(roles.values())
    lines = [
        f"CPU during the run: {total:.1f} core-s in {figures['wall']:.1f} s "
        f"({figures['cores']:.2f} of {os.cpu_count()} cores busy); per {unit}:",
        f"    {'part':<30} {'core-s':>7} {'share':>6} {'ms/' + unit:>14}",
    ]
    for role, seconds in roles.items():
        share = seconds / total if total else 0.0
        lines.append(f"    {role:<30} {seconds:>7.1f} {share:>6.1%} {1000 * seconds / per:>14.0f}")
    lines.append(f"    {'all':<30} {total:>7.1f} {1:>6.0%} {1000 * total / per:>14.0f}")
    return lines


def _role(pid: int, command: str) -> str:
    if pid == os.getpid():
        return CONSUMER
    program, _, arguments = command.partition(" ")
    name = program.rsplit("/", 1)[-1]
    for marker, role in ROLES:
        if name.startswith(marker) or (name.startswith("python") and f"-m {marker}" in arguments):
            return role
    return OTHER
