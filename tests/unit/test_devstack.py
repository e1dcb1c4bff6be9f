"""The local stack's own logic: pinned versions, generated credentials and masked URLs."""

import json
import stat
from pathlib import Path

import pytest

from devstack import credentials
from devstack.layout import Layout, default_layout, read_versions


def test_versions_are_pinned_in_one_file() -> None:
    versions = read_versions()
    assert set(versions) == {
        "KUBERNETES_VERSION",
        "ETCD_VERSION",
        "KWOK_VERSION",
        "KEDA_VERSION",
        "CERT_MANAGER_VERSION",
        "CYCLONUS_VERSION",
        "SEAWEEDFS_VERSION",
        "PROMETHEUS_VERSION",
    }
    assert all(value.startswith("v") for value in versions.values())


def test_credentials_are_generated_once_and_private(tmp_path: Path) -> None:
    layout = Layout(home=tmp_path / "stack")
    first = credentials.load_or_create(layout)
    again = credentials.load_or_create(layout)
    assert first == again
    assert len({first.rabbitmq_admin, first.rabbitmq_service, first.postgres_admin}) == 3
    assert stat.S_IMODE(layout.credentials.stat().st_mode) == 0o600


def test_a_credential_added_later_is_made_for_a_stack_made_before_it(tmp_path: Path) -> None:
    layout = Layout(home=tmp_path / "stack")
    first = credentials.load_or_create(layout)
    older = json.loads(layout.credentials.read_text())
    del older["s3_admin"], older["backup_keyset"]  # as a stack of an earlier release wrote it
    layout.credentials.write_text(json.dumps(older))
    upgraded = credentials.load_or_create(layout)
    assert upgraded.rabbitmq_admin == first.rabbitmq_admin  # the others kept
    assert upgraded.s3_admin
    assert json.loads(upgraded.backup_keyset)["primaryKeyId"]
    assert credentials.load_or_create(layout) == upgraded  # and written back


def test_endpoints_carry_the_generated_passwords(tmp_path: Path) -> None:
    layout = Layout(home=tmp_path)
    secrets = credentials.load_or_create(layout)
    found = credentials.endpoints(layout, secrets)
    assert found.amqp_url == (
        f"amqp://instance-service:{secrets.rabbitmq_service}@127.0.0.1:5672/instance-service"
    )
    assert found.amqp_url_for("test-1", "u", "p") == "amqp://u:p@127.0.0.1:5672/test-1"
    assert secrets.postgres_service in found.database_url
    assert found.kubeconfig == str(tmp_path / "kubeconfig")


def test_home_comes_from_devstack_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEVSTACK_HOME", str(tmp_path / "elsewhere"))
    assert default_layout().home == tmp_path / "elsewhere"
    monkeypatch.delenv("DEVSTACK_HOME")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_layout().home == tmp_path / "state" / "instance-service" / "devstack"
