"""`instance-service publish` against the real broker and a running consumer."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from messages.examples import command_example
from tests.consumers.harness import ProvisionFake, running_consumer

pytestmark = pytest.mark.rabbitmq


def _publish(amqp_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "instance_service", "publish", *args],
        input=stdin,
        env={**os.environ, "INSTANCE_SERVICE_AMQP__URL": amqp_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_publish_and_wait_prints_the_result_event(
    amqp_url: str, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "provision.json"
    path.write_text(json.dumps(command_example("odoo.instance.provision.v1")))
    with running_consumer(amqp_url, engine, {"odoo.instance.provision.v1": ProvisionFake()}):
        result = _publish(amqp_url, str(path), "--wait", "60")
        assert result.returncode == 0, result.stderr
        event = json.loads(result.stdout)
        assert event["type"] == "odoo.instance.provisioned.v1"
        assert event["causationid"] == "provision-7f3a9c21"
        assert "waiting for the result of provision-7f3a9c21: 0 s" in result.stderr

        stop = command_example("odoo.instance.stop.v1")
        stop["subject"] = stop["data"]["instance_id"] = "11111111-2222-4333-8444-555555555555"
        refused = _publish(amqp_url, "-", "--wait", "60", stdin=json.dumps(stop))
    assert refused.returncode == 1
    answer = json.loads(refused.stdout)
    assert answer["type"] == "odoo.instance.command.rejected.v1"
    assert answer["data"]["error"]["code"] == "unknown_instance"


def test_an_invalid_document_is_not_published(amqp_url: str) -> None:
    document = command_example("odoo.instance.provision.v1")
    document["data"]["subdomain"] = "www"
    result = _publish(amqp_url, "-", stdin=json.dumps(document))
    assert result.returncode == 1
    assert json.loads(result.stdout)["code"] == "invalid_data"


def test_without_the_topology_the_broker_refusal_is_explained(amqp_url: str) -> None:
    result = _publish(amqp_url, "-", stdin=json.dumps(command_example("odoo.instance.start.v1")))
    assert result.returncode == 69
    assert "has one run against this vhost?" in result.stderr
