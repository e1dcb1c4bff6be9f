"""The no-op benchmark of two commits side by side: is a change slower than what it replaces?

A refactor's cost hides in noise unless both sides run on the same machine, stack and minute:
this checks the older commit out into a temporary git worktree and runs `bench.overhead` there
and here in turn, `--runs` times each (base first, then this tree), and prints each run and the
medians of commands per second per store with the ratio this/base. Needs the local stack.

Throughput here waits mostly on the broker's disk (a quorum queue confirms after an fsync), so
two runs of one commit can differ by half. The CPU time the benchmark's process used per
command (setup included, the same on both sides) moves far less and is printed beside it:
a change that adds work per command shows there first.

    .venv/bin/python -m bench.compare --base <commit> [--runs 3] [--commands 500]

Both sides use this virtualenv; a commit that needs other packages cannot be compared so.
"""

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE = re.compile(r"^(sqlite|postgresql)\s+([\d.]+)\s+([\d.]+)\s*$", re.MULTILINE)


@contextmanager
def checked_out(revision: str) -> Iterator[Path]:
    """A throwaway worktree of `revision`, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-base-") as parent:
        tree = Path(parent) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), revision],
            check=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
            )


CPU = "cpu"
"""The key of a run's CPU milliseconds per command (both stores' commands together)."""


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def overhead(tree: Path, commands: int) -> dict[str, float]:
    """Commands per second by store, and CPU ms per command, from one run of `bench.overhead`
    in `tree`."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    cpu_before = _children_cpu_seconds()
    finished = subprocess.run(
        [sys.executable, "-m", "bench.overhead", "--commands", str(commands)],
        cwd=tree,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    figures = {store: float(rate) for store, _seconds, rate in FIGURE.findall(finished.stdout)}
    if finished.returncode != 0 or len(figures) != 2:
        raise SystemExit(
            f"bench.overhead failed in {tree} (exit {finished.returncode}):\n"
            f"{finished.stdout}\n{finished.stderr[-3000:]}"
        )
    figures[CPU] = (_children_cpu_seconds() - cpu_before) * 1000 / (commands * len(figures))
    return figures


def main() -> None:
    """Alternate the two sides and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--commands", type=int, default=500)
    arguments = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
    with checked_out(arguments.base) as base:
        for index in range(arguments.runs):
            for side, tree in (("base", base), ("this", ROOT)):
                figures = overhead(tree, arguments.commands)
                runs[side].append(figures)
                shown = "  ".join(
                    f"{store} {rate:7.1f}/s" for store, rate in figures.items() if store != CPU
                )
                shown += f"  cpu {figures[CPU]:5.2f} ms/command"
                print(f"run {index + 1}/{arguments.runs} {side:<4}  {shown}", flush=True)
    print(f"\nmedians of {arguments.runs} runs, {arguments.commands} no-op provisions each")
    print(f"{'figure':<18} {'base':>8} {'this':>8} {'this/base':>10}")
    for key, label in (
        ("sqlite", "sqlite /s"),
        ("postgresql", "postgresql /s"),
        (CPU, "cpu ms/command"),
    ):
        base_median = statistics.median(run[key] for run in runs["base"])
        this_median = statistics.median(run[key] for run in runs["this"])
        ratio = this_median / base_median
        print(f"{label:<18} {base_median:>8.2f} {this_median:>8.2f} {ratio:>10.2f}")


if __name__ == "__main__":
    main()
