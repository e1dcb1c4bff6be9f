"""The alert rules in both forms from one source: deploy/monitoring/instance-service.rules.yaml
(a Prometheus rules file, which promtool checks and tests) wrapped as a PrometheusRule for
clusters where the Prometheus Operator loads rules."""

from pathlib import Path
from typing import Any

import yaml

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
RULES = MONITORING / "instance-service.rules.yaml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"

HEADER = """\
# Made by `.venv/bin/python -m monitoring` from instance-service.rules.yaml: edit that file, not
# this one (tests/unit/test_monitoring_files.py keeps them equal). For the Prometheus Operator:
# its Prometheus selects PrometheusRules by label; set the labels yours selects on.
"""


def rule_groups(path: Path = RULES) -> list[dict[str, Any]]:
    """The groups of the plain rules file."""
    loaded = yaml.safe_load(path.read_text())
    groups: list[dict[str, Any]] = loaded["groups"]
    return groups


def prometheus_rule(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The PrometheusRule holding these groups."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "instance-service",
            "namespace": "instance-service",
            "labels": {
                "app.kubernetes.io/name": "instance-service",
                "app.kubernetes.io/component": "alert-rules",
            },
        },
        "spec": {"groups": groups},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the PromQL expressions) as blocks, as in the rules file."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def render() -> str:
    """The PrometheusRule file's text."""
    body = yaml.dump(prometheus_rule(rule_groups()), Dumper=_Dumper, sort_keys=False, width=100)
    return HEADER + body
