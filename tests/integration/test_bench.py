"""`python -m bench --quick` runs every benchmark on the local stack and writes its JSON and
chart (the figures themselves are for people: nothing here judges them)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.k8s]
ROOT = Path(__file__).resolve().parents[2]


def _bench(module: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run a benchmark module as a user would, from the repository."""
    return subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_one_command_prints_the_tables_and_writes_json_and_png(tmp_path: Path) -> None:
    result = _bench("bench", "--quick", "--results", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "== summary" in result.stdout
    assert "no-op commands per second, postgresql" in result.stdout
    (run,) = tmp_path.iterdir()
    figures = json.loads((run / "results.json").read_text())
    assert set(figures) >= {
        "machine",
        "overhead",
        "floor",
        "floor_ratios",
        "ceilings",
        "provision",
        "reaction",
        "cold_start",
        "reconcile",
    }
    assert [len(values) for values in figures["reaction"]["samples"].values()] == [1, 1]
    (provisioned,) = figures["provision"]["provision"]
    assert provisioned["succeeded"] == provisioned["provisions"] == 5
    assert figures["provision"]["requests"]["provision"] > 0
    used = provisioned["cpu_core_seconds"]
    assert used["consumer (this process)"] > 0
    assert used["API server"] > 0
    assert used["wall"] > 0
    assert "CPU during the run" in result.stdout
    assert figures["overhead"]["sqlite"]["commands"] == 50
    assert set(figures["floor"]["postgresql"]) == {"one_at_a_time", "batched"}
    assert set(figures["ceilings"]) == {"databases", "objects"}
    assert provisioned["of_ceiling"] > 0
    assert all(rate > 0 for loops in figures["floor"].values() for rate in loops.values())
    assert len(figures["cold_start"]["runs"]) == 2
    assert [row["requests"] for row in figures["reconcile"]] == [7, 9, 7, 9]
    assert (run / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_profile_of_a_no_op_command_splits_its_cpu_by_component(tmp_path: Path) -> None:
    result = _bench(
        "bench.profile",
        "--commands",
        "40",
        "--store",
        "sqlite",
        "--json",
        str(tmp_path / "profile.json"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(b) CPU ms per command by component" in result.stdout
    (profile,) = json.loads((tmp_path / "profile.json").read_text())
    assert profile["store"] == "sqlite"
    assert profile["commands"] == 40
    components = profile["components"]
    assert set(components) == {
        "broker I/O",
        "store",
        "parsing",
        "telemetry",
        "handler",
        "runtime",
        "rest",
    }
    # The estimate without the profiler shares out the consumer's measured CPU, no more.
    measured = profile["threads"]["consumer, all threads"]["plain"]
    estimated = sum(component["estimated"] for component in components.values())
    assert measured > 0
    assert abs(estimated - measured) <= 0.05 * measured
    assert components["store"]["estimated"] > 0
    assert profile["functions"]
