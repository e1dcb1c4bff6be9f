"""Two commits side by side on the same machine, stack and minute: is a change slower, heavier or
slower to start than what it replaces, and how far is it from the raw loops under it?

A refactor's cost hides in noise unless both sides run together: this checks the older commit
out into a temporary git worktree and, `--runs` times (a round: base first, then this tree),
runs in each tree `bench.overhead` (no-op commands per second per store, and the CPU
milliseconds the benchmark's process spent per command) and `bench.cold_start` (a few cold
starts: medians of process start to first ack, and idle RSS), then once per round in this tree
the raw loops of `bench.floor` (plain pika and the same database, one message at a time and
batched). It prints each measurement as it ends, then the medians: each figure base and this
with the ratio this/base, and each side's throughput as a fraction of each raw loop. Each
round's figures and the medians go to `--results DIR` as `compare.json` (rewritten after every
round), for a page to quote. Needs the local stack.

Throughput here waits mostly on the broker's disk (a quorum queue confirms after an fsync), so
two runs of one commit can differ by half; the CPU time per command (setup included, the same
on both sides) moves far less: a change that adds work per command shows there first.

    .venv/bin/python -m bench.compare --base <commit> [--runs 3] [--commands 500]
        [--cold-runs 3 | --no-cold-start] [--floor-messages 2000 | --no-floor] [--results DIR]

Each side runs its own tree's benchmarks, and both use this virtualenv: a commit that needs
other packages cannot be compared so. The raw loops run from this tree only (they are the
machine's, not a commit's).
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import floor
from bench.machine import machine

ROOT = Path(__file__).resolve().parent.parent
STORES = ("sqlite", "postgresql")
CPU = "cpu_ms_per_command"
"""A run's CPU milliseconds per command (both stores' commands together)."""
THROUGHPUT = re.compile(r"^(sqlite|postgresql)\s+[\d.]+\s+([\d.]+)\s*$", re.MULTILINE)
"""A row of `bench.overhead`'s table: store, seconds, commands per second."""
COLD_START = {
    key: re.compile(rf"^median:.*\b{words} ([\d.]+) {unit}\b", re.MULTILINE)
    for key, words, unit in (
        ("ready_s", "ready", "s"),
        ("acknowledged_s", "first command acknowledged", "s"),
        ("event_s", "its event received", "s"),
        ("idle_rss_mib", "idle RSS", "MiB"),
    )
}
"""Each median of `bench.cold_start`'s "median: ..." line (printed alike since before issue 18)."""
FIGURES = {
    "sqlite": ("sqlite commands/s", ".1f"),
    "postgresql": ("postgresql commands/s", ".1f"),
    CPU: ("cpu ms/command", ".2f"),
    "acknowledged_s": ("cold start to first ack s", ".3f"),
    "idle_rss_mib": ("idle RSS MiB", ".1f"),
}
"""What is printed of a side's figures, in order: label and format."""
LOOPS = {"one_at_a_time": "one at a time", "batched": "batched"}


@dataclass(frozen=True)
class Sizes:
    """How much each round does (None: that part is skipped)."""

    commands: int
    cold_runs: int | None
    floor_messages: int | None
    floor_batch: int = floor.BATCH


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


def _git(*arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *arguments], capture_output=True, text=True, check=True
    ).stdout.strip()


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_module(tree: Path, module: str, *arguments: str) -> str:
    """What `python -m module arguments` printed in `tree`; stops everything if it failed."""
    finished = subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
    )
    if finished.returncode != 0:
        raise SystemExit(
            f"{module} failed in {tree} (exit {finished.returncode}):\n"
            f"{finished.stdout}\n{finished.stderr[-3000:]}"
        )
    return finished.stdout


def parse_overhead(output: str) -> dict[str, float]:
    """Commands per second by store, from what `bench.overhead` printed."""
    figures = {store: float(rate) for store, rate in THROUGHPUT.findall(output)}
    if set(figures) != set(STORES):
        raise ValueError(f"no commands/s for each of {STORES} in:\n{output}")
    return figures


def parse_cold_start(output: str) -> dict[str, float]:
    """The medians `bench.cold_start` printed: seconds to ready, to first ack, to its event,
    and idle RSS in MiB."""
    found = {key: pattern.search(output) for key, pattern in COLD_START.items()}
    missing = [key for key, match in found.items() if match is None]
    if missing:
        raise ValueError(f"no {', '.join(missing)} in:\n{output}")
    return {key: float(match.group(1)) for key, match in found.items() if match}


def overhead(tree: Path, commands: int) -> dict[str, float]:
    """Commands per second by store, and CPU ms per command, from one `bench.overhead` in `tree`."""
    cpu_before = _children_cpu_seconds()
    figures = parse_overhead(_run_module(tree, "bench.overhead", "--commands", str(commands)))
    figures[CPU] = (_children_cpu_seconds() - cpu_before) * 1000 / (commands * len(STORES))
    return figures


def cold_start(tree: Path, runs: int) -> dict[str, float]:
    """The medians of `runs` cold starts by `bench.cold_start` in `tree`."""
    return parse_cold_start(_run_module(tree, "bench.cold_start", "--runs", str(runs)))


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median of each figure over the runs that have it."""
    keys = dict.fromkeys(key for run in runs for key in run)
    return {key: statistics.median(run[key] for run in runs if key in run) for key in keys}


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of each side and of the raw loops, this/base, and throughput as a fraction of
    each raw loop."""
    sides = {side: medians([r[side] for r in rounds]) for side in ("base", "this")}
    summary: dict[str, Any] = {
        **sides,
        "this_over_base": {key: sides["this"][key] / sides["base"][key] for key in sides["this"]},
    }
    floors = [r["floor"] for r in rounds if "floor" in r]
    if floors:
        summary["floor"] = {store: medians([f[store] for f in floors]) for store in STORES}
        summary["of_floor"] = {
            side: floor.ratios({s: {"per_second": figures[s]} for s in STORES}, summary["floor"])
            for side, figures in sides.items()
        }
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    """The medians as a table: base, this, this/base, and the raw loops under them."""
    base, this, ratio = summary["base"], summary["this"], summary["this_over_base"]
    print(f"{'figure':<34} {'base':>9} {'this':>9} {'this/base':>10}")
    for key, (label, form) in FIGURES.items():
        if key not in this:
            continue
        print(f"{label:<34} {base[key]:>9{form}} {this[key]:>9{form}} {ratio[key]:>10.2f}")
        if key in STORES and "of_floor" in summary:
            for loop, words in LOOPS.items():
                of_base, of_this = (
                    summary["of_floor"][side][key][loop] for side in ("base", "this")
                )
                print(f"{'  of the raw loop, ' + words:<34} {of_base:>9.3f} {of_this:>9.3f}")
    for store, loops in summary.get("floor", {}).items():
        print(f"raw loops, {store}: {_shown_loops(loops)}")


def _shown(figures: dict[str, float]) -> str:
    return "  ".join(
        f"{label} {figures[key]:{form}}" for key, (label, form) in FIGURES.items() if key in figures
    )


def _shown_loops(loops: dict[str, float]) -> str:
    return ", ".join(f"{words} {loops[loop]:.1f}/s" for loop, words in LOOPS.items())


def one_round(trees: dict[str, Path], sizes: Sizes, prefix: str) -> dict[str, Any]:
    """Each side's figures, and the raw loops', printed as each ends."""
    figures: dict[str, Any] = {side: {} for side in trees}
    for side, tree in trees.items():
        figures[side] |= overhead(tree, sizes.commands)
        print(f"{prefix} {side:<5} {_shown(figures[side])}", flush=True)
    if sizes.cold_runs is not None:
        for side, tree in trees.items():
            started = cold_start(tree, sizes.cold_runs)
            figures[side] |= started
            print(f"{prefix} {side:<5} {_shown(started)}", flush=True)
    if sizes.floor_messages is not None:
        figures["floor"] = floor.run(sizes.floor_messages, sizes.floor_batch)
        for store, loops in figures["floor"].items():
            print(f"{prefix} floor {store} {_shown_loops(loops)}", flush=True)
    return figures


def main() -> None:
    """Alternate the two sides, print each measurement and the medians, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--runs", type=int, default=3, help="rounds, each side once per round")
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--cold-runs", type=int, default=3, help="cold starts per side per round")
    parser.add_argument("--no-cold-start", action="store_true")
    parser.add_argument("--floor-messages", type=int, default=2000, help="per raw loop")
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--results", type=Path, help="default results/compare-<UTC time>")
    arguments = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = (arguments.results or Path("results") / f"compare-{stamp}") / "compare.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = Sizes(
        commands=arguments.commands,
        cold_runs=None if arguments.no_cold_start else arguments.cold_runs,
        floor_messages=None if arguments.no_floor else arguments.floor_messages,
    )
    record: dict[str, Any] = {
        "when": stamp,
        "machine": machine(),
        "base": _git("rev-parse", "--verify", f"{arguments.base}^{{commit}}"),
        "this": _git("rev-parse", "HEAD"),
        "this_modified": bool(_git("status", "--porcelain")),
        "sizes": {"runs": arguments.runs, **asdict(sizes)},
        "rounds": [],
    }
    with checked_out(arguments.base) as base:
        for index in range(arguments.runs):
            prefix = f"round {index + 1}/{arguments.runs}"
            record["rounds"].append(one_round({"base": base, "this": ROOT}, sizes, prefix))
            record["medians"] = summarise(record["rounds"])
            path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nmedians of {arguments.runs} rounds, base {record['base'][:9]} and this tree")
    print_summary(record["medians"])
    print(f"written: {path}")


if __name__ == "__main__":
    main()
