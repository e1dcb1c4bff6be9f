"""Settings come from INSTANCE_SERVICE_* variables, grouped with `__`, and hide their secrets."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from instance_service.settings import Settings


def test_defaults_run_against_a_local_stack_with_sqlite_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AMQP__URL", "STORE__URL", "KUBERNETES__KUBECONFIG", "LOG__LEVEL"):
        monkeypatch.delenv(f"INSTANCE_SERVICE_{name}", raising=False)
    settings = Settings()
    assert settings.store.url.get_secret_value() == "sqlite:///instance-service.db"
    assert settings.kubernetes.kubeconfig is None
    assert settings.kubernetes.namespace == "odoo-tenants"
    assert settings.log.level == "INFO"


def test_nested_groups_read_from_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTANCE_SERVICE_AMQP__URL", "amqp://u:topsecret@broker:5672/v")
    monkeypatch.setenv("INSTANCE_SERVICE_AMQP__HEARTBEAT_SECONDS", "5")
    monkeypatch.setenv("INSTANCE_SERVICE_KUBERNETES__KUBECONFIG", "/etc/kube/config")
    monkeypatch.setenv("INSTANCE_SERVICE_KUBERNETES__NAMESPACE", "tenants")
    monkeypatch.setenv("INSTANCE_SERVICE_LOG__LEVEL", "DEBUG")
    settings = Settings()
    assert settings.amqp.url.get_secret_value() == "amqp://u:topsecret@broker:5672/v"
    assert settings.amqp.heartbeat_seconds == 5
    assert settings.kubernetes.kubeconfig == Path("/etc/kube/config")
    assert settings.kubernetes.namespace == "tenants"
    assert settings.log.level == "DEBUG"
    assert "topsecret" not in repr(settings)
    assert "topsecret" not in str(settings.model_dump())


def test_invalid_values_name_the_variable_and_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTANCE_SERVICE_AMQP__HEARTBEAT_SECONDS", "-1")
    monkeypatch.setenv("INSTANCE_SERVICE_LOG__LEVEL", "LOUD")
    with pytest.raises(ValidationError) as raised:
        Settings()
    fields = {".".join(str(part) for part in error["loc"]) for error in raised.value.errors()}
    assert fields == {"amqp.heartbeat_seconds", "log.level"}
