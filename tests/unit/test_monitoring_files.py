"""deploy/monitoring/'s generated files are what `python -m monitoring` makes, the two forms of
the rules agree, the dashboard is well formed, and every metric the rules and the dashboard
read is one the service (or RabbitMQ) exports, under the names Prometheus gives it."""

import json
import re
from pathlib import Path

import yaml

from monitoring import rules
from monitoring.__main__ import DASHBOARD, main

METRICS_MODULE = Path(__file__).resolve().parents[2] / "telemetry" / "metrics.py"
SUFFIXES = ("_total", "_seconds_bucket", "_seconds_count", "_seconds_sum", "_seconds")


def test_the_committed_files_are_what_the_generator_makes() -> None:
    assert main(["--check"]) == 0


def test_the_prometheus_rule_holds_exactly_the_rules_files_groups() -> None:
    made = yaml.safe_load(rules.PROMETHEUS_RULE.read_text())
    assert made["kind"] == "PrometheusRule"
    assert made["spec"]["groups"] == rules.rule_groups()
    alerts = [rule["alert"] for group in rules.rule_groups() for rule in group["rules"]]
    assert len(alerts) == len(set(alerts)) >= 12
    for group in rules.rule_groups():
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["annotations"]["description"], rule["alert"]


def test_every_alert_has_a_promtool_test_and_a_runbook_line() -> None:
    tests = (rules.MONITORING / "tests" / "instance-service.test.yaml").read_text()
    runbook = (rules.MONITORING.parent / "README.md").read_text()
    for group in rules.rule_groups():
        for rule in group["rules"]:
            assert f"alertname: {rule['alert']}\n" in tests, rule["alert"]
            assert f"`{rule['alert']}`" in runbook, rule["alert"]


def _exported() -> set[str]:
    """The service's instruments as Prometheus names them (dots to underscores)."""
    names = re.findall(r'"(instance_service\.[a-z_.]+)"', METRICS_MODULE.read_text())
    return {name.replace(".", "_") for name in names}


def _read_by(text: str) -> set[str]:
    """The service's metric names an expression text reads, without Prometheus' suffixes."""
    found = set()
    for name in re.findall(r"\binstance_service_[a-z_]+", text):
        for suffix in SUFFIXES:
            if name.endswith(suffix):
                name = name.removesuffix(suffix)
                break
        found.add(name)
    # label names share the prefix: keep the metric names only
    labels = {"instance_service_command_type", "instance_service_outcome",
              "instance_service_instance_id", "instance_service_domain",
              "instance_service_retry_reason"}  # fmt: skip
    return found - labels


def test_the_rules_and_the_dashboard_read_only_metrics_the_service_exports() -> None:
    exported = _exported()
    assert "instance_service_watcher_heartbeat_timestamp" in exported
    for path in (rules.RULES, DASHBOARD):
        unknown = _read_by(path.read_text()) - exported
        assert not unknown, f"{path.name} reads metrics nobody exports: {sorted(unknown)}"


def test_the_dashboard_is_well_formed() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "instance-service-operations"
    assert board["schemaVersion"] >= 41
    panels = board["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    assert 0 not in ids
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"], panel["title"]
            assert target["refId"], panel["title"]
            assert target["datasource"]["uid"] == "${datasource}"
    titles = " ".join(panel["title"] for panel in panels).lower()
    for subject in (
        "outcome",
        "latency",
        "queue",
        "replicas",
        "outbox",
        "dead letters",
        "kubernetes",
    ):
        assert subject in titles, subject
    variables = board["templating"]["list"]
    assert [(v["name"], v["type"], v["query"]) for v in variables] == [
        ("datasource", "datasource", "prometheus")
    ]
