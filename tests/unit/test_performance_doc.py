"""docs/performance.md quotes the run kept beside it (docs/performance.json), not numbers typed
in by hand: each line of its summary table is recomputed from that run's results."""

import json
import statistics
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _summary_rows() -> dict[str, str]:
    text = (DOCS / "performance.md").read_text()
    table = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| ")]
    return {cells[1].strip(): cells[2].strip() for cells in rows[1:]}


def _expected(run: dict[str, Any]) -> dict[str, str]:
    overhead, provision = run["overhead"], run["provision"]["provision"]
    by_size = {row["provisions"]: row for row in provision}
    medians = run["reaction"]["medians"]
    cold = run["cold_start"]["runs"]
    fleet = next(r for r in run["reconcile"] if r["instances"] == 1000 and r["state"] == "in line")

    def provisions(size: int) -> str:
        row = by_size[size]
        return " / ".join(f"{row[key]:.1f}" for key in ("seconds", "p50_s", "p95_s", "p99_s"))

    def of_floor(store: str) -> str:
        ratios = run["floor_ratios"][store]
        return f"{ratios['one_at_a_time']:.3f} / {ratios['batched']:.3f}"

    slower = min(figures["best"] for figures in run["ceilings"].values())
    return {
        "no-op commands per second through one consumer, SQLite": (
            f"{overhead['sqlite']['per_second']:.1f}"
        ),
        "... as a fraction of the raw loop, one at a time / batched": of_floor("sqlite"),
        "the same, PostgreSQL": f"{overhead['postgresql']['per_second']:.1f}",
        "... as a fraction of its raw loop, one at a time / batched": of_floor("postgresql"),
        "50 provisions published at once: all done in / p50 / p95 / p99 (s)": provisions(50),
        "200 provisions published at once: all done in / p50 / p95 / p99 (s)": provisions(200),
        "... per second, and as a fraction of the slower ceiling (per second)": (
            f"{by_size[200]['per_second']:.2f}, {by_size[200]['per_second'] / slower:.2f}"
            f" ({slower:.1f})"
        ),
        "rollout to result event, median, watching": f"{medians['watch']:.3f} s",
        "the same, polling every 5 s (the predecessor's way)": (
            f"{medians['poll every 5 s']:.3f} s ({run['reaction']['ratio']:.0f}x)"
        ),
        "cold start to first acknowledged command, median of 7": (
            f"{statistics.median(r['acknowledged'] for r in cold):.3f} s"
        ),
        "idle RSS of `consume`": f"{statistics.median(r['rss_mib'] for r in cold):.1f} MiB",
        "reconcile 1,000 instances in line: API requests / seconds": (
            f"{fleet['requests']} / {fleet['total_s']:.2f}"
        ),
    }


def test_the_summary_is_the_kept_run() -> None:
    run = json.loads((DOCS / "performance.json").read_text())
    assert _summary_rows() == _expected(run)
    assert len(run["cold_start"]["runs"]) == 7


def test_the_page_names_the_machine_of_the_kept_run() -> None:
    machine = json.loads((DOCS / "performance.json").read_text())["machine"]
    text = (DOCS / "performance.md").read_text()
    assert f"{machine['cpus']} cores" in text
    assert f"{machine['memory_gib']} GiB" in text
    assert f"Python {machine['python']}" in text
