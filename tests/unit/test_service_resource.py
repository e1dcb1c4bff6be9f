"""The resource every span and data point carries: the service's defaults, and what the
operator sets in the standard variables over them."""

import os

import pytest

from telemetry.tracing import service_resource


def test_defaults_name_the_service_and_one_instance_per_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    monkeypatch.delenv("POD_NAME", raising=False)
    attributes = service_resource("1.2.3").attributes
    assert attributes["service.name"] == "instance-service"
    assert attributes["service.version"] == "1.2.3"
    assert str(attributes["service.instance.id"]).endswith(f":{os.getpid()}")


def test_in_a_pod_the_instance_is_the_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "instance-service-long-7d9f-x2")
    attributes = service_resource("1.2.3").attributes
    assert attributes["service.instance.id"] == "instance-service-long-7d9f-x2"
    assert attributes["k8s.pod.name"] == "instance-service-long-7d9f-x2"


def test_the_operators_variables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "saas-instances")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.version=9")
    attributes = service_resource("1.2.3").attributes
    assert attributes["service.name"] == "saas-instances"
    assert attributes["deployment.environment"] == "prod"
    assert attributes["service.version"] == "9"
