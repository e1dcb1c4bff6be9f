"""The no-op benchmark of two commits side by side: is a change slower than what it replaces?

A refactor's cost hides in noise unless both sides run on the same machine, stack and minute:
this checks the older commit out into a temporary git worktree and runs `bench.overhead` there
and here in turn, `--runs` times each (base first, then this tree), and prints each run and the
medians of commands per second per store with the ratio this/base. Needs the local stack.

    .venv/bin/python -m bench.compare --base <commit> [--runs 3] [--commands 500]

Both sides use this virtualenv; a commit that needs other packages cannot be compared so.
"""

import argparse
import os
import re
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


def overhead(tree: Path, commands: int) -> dict[str, float]:
    """Commands per second by store, from one run of `bench.overhead` in `tree`."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
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
                shown = "  ".join(f"{store} {rate:7.1f}/s" for store, rate in figures.items())
                print(f"run {index + 1}/{arguments.runs} {side:<4}  {shown}", flush=True)
    print(f"\nmedians of {arguments.runs} runs, {arguments.commands} no-op provisions each")
    print(f"{'store':<11} {'base /s':>8} {'this /s':>8} {'this/base':>10}")
    for store in ("sqlite", "postgresql"):
        base_median = statistics.median(run[store] for run in runs["base"])
        this_median = statistics.median(run[store] for run in runs["this"])
        ratio = this_median / base_median
        print(f"{store:<11} {base_median:>8.1f} {this_median:>8.1f} {ratio:>10.2f}")


if __name__ == "__main__":
    main()
