"""The dead-letter alert fires on the real Prometheus: a consumer process exports its metrics
over OTLP to the stack's Prometheus (its OTLP receiver, the name translation pinned by
deploy/monitoring/prometheus.yaml), hostile messages reach it through the broker and are
dead-lettered, and Prometheus, evaluating deploy/monitoring/'s rules, reports
InstanceServiceDeadLetters firing for them.

The process gets a service name of its own (Prometheus' `job`), so the alert it causes is told
apart from any other run's."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest

from devstack.httpcheck import get
from devstack.layout import default_layout
from devstack.prometheus import Prometheus
from tests.consumers.harness import publish

pytestmark = [pytest.mark.rabbitmq, pytest.mark.prometheus]
ALERT = "InstanceServiceDeadLetters"


def _alerts(prometheus: Prometheus, job: str) -> list[dict[str, Any]]:
    status, body = get(f"{prometheus.url}/api/v1/alerts")
    assert status == 200, body
    alerts: list[dict[str, Any]] = json.loads(body)["data"]["alerts"]
    return [a for a in alerts if a["labels"].get("job") == job]


def _query(prometheus: Prometheus, expr: str) -> list[dict[str, Any]]:
    status, body = get(f"{prometheus.url}/api/v1/query?query={urllib.parse.quote(expr)}")
    assert status == 200, body
    result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
    return result


def test_dead_lettered_hostile_messages_make_the_alert_fire(amqp_url: str, tmp_path: Path) -> None:
    prometheus = Prometheus(default_layout())
    job = f"instance-service-test-{uuid.uuid4().hex[:8]}"
    environment = {
        **os.environ,
        "OTEL_SERVICE_NAME": job,
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": prometheus.otlp_metrics_url,
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_TRACES_EXPORTER": "none",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.consumers.metrics_process", amqp_url,
         f"sqlite:///{tmp_path / 'state.db'}"],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        # Its metrics arrive (the outbox gauge, from the first export on), and no alert yet.
        deadline = time.monotonic() + 60
        while not _query(prometheus, f'instance_service_outbox_backlog{{job="{job}"}}'):
            assert time.monotonic() < deadline, "no metric of the process reached Prometheus"
            time.sleep(1)
        assert _alerts(prometheus, job) == []

        # Three hostile messages, as a buggy publisher sends them: not JSON, not UTF-8, and an
        # array nested past any parser's patience.
        hostile = [("", b"{not json"), ("", b"\xff\xfe\x00"), ("", b"[" * 5000 + b"]" * 5000)]
        publish(amqp_url, hostile, "odoo.instance.provision.v1")

        deadline = time.monotonic() + 90
        while not (firing := [a for a in _alerts(prometheus, job) if a["state"] == "firing"]):
            assert time.monotonic() < deadline, f"{ALERT} never fired: {_alerts(prometheus, job)}"
            time.sleep(1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        if process.stdout is not None:
            process.stdout.close()
    assert [(a["labels"]["alertname"], a["labels"]["error_type"]) for a in firing] == [
        (ALERT, "malformed")
    ]
    counted = _query(
        prometheus, f'sum(instance_service_commands_dead_lettered_total{{job="{job}"}})'
    )
    assert float(counted[0]["value"][1]) == len(hostile)
    assert firing[0]["labels"]["severity"] == "warning"
    assert (
        firing[0]["annotations"]["summary"] == "(unreadable) deliveries dead-lettered (malformed)"
    )
