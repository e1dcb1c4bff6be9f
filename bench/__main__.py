"""Every benchmark in one command: prints each table, then writes `results.json` and a chart
(`results.png`) under `results/<UTC time>/`. Needs the local stack (`python -m devstack up`).

    .venv/bin/python -m bench [--quick] [--results DIR]

`--quick` runs smaller sizes (for a smoke test), not figures to quote.
"""

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from bench import (
    ceilings,
    cold_start,
    floor,
    overhead,
    provision,
    reaction,
    reconcile,
    schedule,
)
from bench.machine import machine


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does."""

    commands: int
    floor_messages: int
    ceiling_instances: int
    ceiling_threads: tuple[int, ...]
    provisions: tuple[int, ...]
    reaction_instances: int
    reaction_cycles: int
    cold_runs: int
    fleet_sizes: tuple[int, ...]
    broken: int
    schedule_instances: int


FULL = Sizes(
    commands=500,
    floor_messages=2000,
    ceiling_instances=60,
    ceiling_threads=(1, 4, 8),
    provisions=(50, 200),  # the fake node fits 400 Odoo pods at 500m
    reaction_instances=3,
    reaction_cycles=3,
    cold_runs=7,
    fleet_sizes=(100, 250, 1000),
    broken=10,
    schedule_instances=10_000,
)
QUICK = Sizes(
    commands=50,
    floor_messages=100,
    ceiling_instances=6,
    ceiling_threads=(2,),
    provisions=(5,),
    reaction_instances=1,
    reaction_cycles=1,
    cold_runs=2,
    fleet_sizes=(20, 50),
    broken=2,
    schedule_instances=500,
)


def chart(results: dict[str, Any], path: Path) -> None:
    """Five panels: framework throughput beside the raw loops, provision latency, reaction,
    cold start, reconcile."""
    figure, (left, latency, react, middle, right) = plt.subplots(1, 5, figsize=(25, 4.5))
    stores = list(results["overhead"])
    bars = {
        "service, no-op": [results["overhead"][s]["per_second"] for s in stores],
        "raw loop, one at a time": [results["floor"][s]["one_at_a_time"] for s in stores],
        "raw loop, batched": [results["floor"][s]["batched"] for s in stores],
    }
    for offset, (label, values) in enumerate(bars.items()):
        positions = [i + (offset - 1) * 0.25 for i in range(len(stores))]
        left.bar(positions, values, 0.25, label=label)
    left.set_xticks(range(len(stores)), stores)
    left.set_yscale("log")
    left.set_title("no-op commands per second, and the floor")
    left.set_ylabel("messages / s (log)")
    left.legend(fontsize="small")

    rows = results["provision"]["provision"]
    labels = [str(row["provisions"]) for row in rows]
    width = 0.25
    for offset, key in enumerate(("p50_s", "p95_s", "p99_s")):
        positions = [i + (offset - 1) * width for i in range(len(rows))]
        latency.bar(positions, [row[key] for row in rows], width, label=key.removesuffix("_s"))
    latency.set_xticks(range(len(rows)), labels)
    latency.set_xlabel("provisions published at once")
    latency.set_ylabel("seconds, publish to provisioned")
    latency.set_title("provision latency, one consumer")
    latency.legend()

    medians = results["reaction"]["medians"]
    react.bar(list(medians), list(medians.values()), color=["#55a868", "#c44e52"])
    react.set_title(f"rollout to event: {results['reaction']['ratio']:.0f}x faster by watching")
    react.set_ylabel("median seconds")

    runs = results["cold_start"]["runs"]
    index = range(1, len(runs) + 1)
    middle.bar(index, [r["acknowledged"] for r in runs], color="#55a868", label="first ack")
    middle.axhline(1.0, color="#c44e52", linestyle="--", label="goal 1 s")
    middle.set_title("cold start: process start to first ack")
    middle.set_xlabel("run")
    middle.set_xticks(list(index))
    middle.set_ylabel("seconds")
    middle.legend()

    rows = [r for r in results["reconcile"] if r["state"] == "in line"]
    sizes = [r["instances"] for r in rows]
    right.plot(sizes, [r["requests"] for r in rows], marker="o", label="API requests")
    right.set_xlabel("instances")
    right.set_ylabel("requests per reconcile")
    right.set_ylim(bottom=0)
    twin = right.twinx()
    twin.plot(sizes, [r["total_s"] for r in rows], marker="s", color="#dd8452", label="seconds")
    twin.set_ylabel("seconds")
    twin.set_ylim(bottom=0)
    right.set_title("fleet reconcile, fleet in line")
    right.legend(loc="upper left")
    twin.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    """Run, print, write."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--results", type=Path, default=Path("results"))
    arguments = parser.parse_args()
    sizes = QUICK if arguments.quick else FULL
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    directory = arguments.results / stamp
    directory.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"when": stamp, "machine": machine(), "sizes": asdict(sizes)}

    print(f"== framework overhead ({sizes.commands} no-op provisions)", flush=True)
    results["overhead"] = overhead.run(sizes.commands)
    for store, figures in results["overhead"].items():
        print(f"{store:<11} {figures['seconds']:>8.2f} s {figures['per_second']:>9.1f} commands/s")
    print(f"== the floor: plain pika and the same database ({sizes.floor_messages} messages)")
    results["floor"] = floor.run(sizes.floor_messages, floor.BATCH)
    results["floor_ratios"] = floor.ratios(results["overhead"], results["floor"])
    for store, loops in results["floor"].items():
        ratio = results["floor_ratios"][store]
        print(
            f"{store:<11} one at a time {loops['one_at_a_time']:>8.1f}/s (service"
            f" {ratio['one_at_a_time']:.3f} of it)  batched {loops['batched']:>8.1f}/s"
            f" (service {ratio['batched']:.3f} of it)",
            flush=True,
        )
    print(f"== provisions through one consumer ({sizes.provisions})", flush=True)
    results["provision"] = provision.run(list(sizes.provisions))
    print(f"== provisioning ceilings ({sizes.ceiling_instances} instances)", flush=True)
    results["ceilings"] = ceilings.run(sizes.ceiling_instances, list(sizes.ceiling_threads))
    slower = min(figures["best"] for figures in results["ceilings"].values())
    for key, figures in results["ceilings"].items():
        print(f"{key:<11} best {figures['best']:>8.1f} instances/s", flush=True)
    for row in results["provision"]["provision"]:
        row["of_ceiling"] = row["per_second"] / slower
        print(
            f"{row['provisions']} provisions: {row['per_second']:.2f}/s,"
            f" {row['of_ceiling']:.2f} of the slower ceiling ({slower:.1f}/s)",
            flush=True,
        )
    print("== reaction: watching vs polling every 5 s", flush=True)
    results["reaction"] = reaction.run(sizes.reaction_instances, sizes.reaction_cycles)
    print("== cold start", flush=True)
    results["cold_start"] = cold_start.run(sizes.cold_runs)
    print("== fleet reconcile", flush=True)
    results["reconcile"] = reconcile.run(list(sizes.fleet_sizes), sizes.broken)
    print(f"== backup schedule ({sizes.schedule_instances} instances)", flush=True)
    results["schedule"] = schedule.run(sizes.schedule_instances)

    (directory / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, directory / "results.png")
    cold = results["cold_start"]
    largest = results["reconcile"][-2]
    print("== summary")
    print(f"{'figure':<52} {'value':>12}")
    for store, figures in results["overhead"].items():
        print(f"{'no-op commands per second, ' + store:<52} {figures['per_second']:>12.1f}")
        for loop, ratio in results["floor_ratios"][store].items():
            label = f"  ... of the raw loop, {loop.replace('_', ' ')}"
            print(f"{label:<52} {ratio:>12.3f}")
    for row in results["provision"]["provision"]:
        label = f"provisions at once: {row['provisions']}, p50 s"
        print(f"{label:<52} {row['p50_s']:>12.2f}")
        print(f"{'  ... p95 s':<52} {row['p95_s']:>12.2f}")
        print(f"{'  ... provisions per second':<52} {row['per_second']:>12.2f}")
        print(f"{'  ... of the slower ceiling':<52} {row['of_ceiling']:>12.2f}")
    for variant, median in results["reaction"]["medians"].items():
        print(f"{'rollout to event, median s, ' + variant:<52} {median:>12.3f}")
    print(f"{'cold start to first ack, median s':<52} {cold['median_acknowledged_s']:>12.3f}")
    print(f"{'idle RSS, median MiB':<52} {cold['median_idle_rss_mib']:>12.1f}")
    for store, row in results["schedule"].items():
        label = f"backups due of {row['instances']} instances, {store}: queries"
        print(f"{label:<52} {row['queries']:>12d}")
        print(f"{'  ... seconds':<52} {row['total_s']:>12.2f}")
    reconcile_label = f"reconcile {largest['instances']} instances in line: requests"
    print(f"{reconcile_label:<52} {largest['requests']:>12.0f}")
    print(f"{'  ... seconds':<52} {largest['total_s']:>12.2f}")
    print(f"written: {directory / 'results.json'}, {directory / 'results.png'}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
