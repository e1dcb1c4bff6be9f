"""deploy/ renders, validates against the real API server (with KEDA's CRDs installed from its Go
module), and says what the service needs: the permission table, the queues, a grace period above
the handler budget, scaling to zero on the queue including in-flight work, a disruption budget
that never blocks a drain, and settings the service accepts."""

import json
import re

import pytest
from kubernetes import client
from pydantic import ValidationError

from consumers.settings import ConsumerSettings, WatcherSettings
from consumers.topology import served_queues
from instance_service.settings import Settings
from k8s.permissions import CONSUMER_PERMISSIONS, WATCHER_PERMISSIONS, Permission
from k8s.tenancy import DEFAULT_DENY, build_default_deny, build_tenant_namespace
from messages.amqp import AmqpProperties
from messages.parsing import parse_command
from messages.settings import ContractSettings
from tests.deploy.manifests import (
    BASE,
    EXAMPLE,
    SERVICE_NAMESPACE,
    Document,
    kubectl,
    one,
    rendered,
)

pytestmark = pytest.mark.k8s

CONSUMERS = {"instance-service-quick": "quick", "instance-service-long": "long"}


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    """The example overlay, rendered."""
    return rendered(EXAMPLE)


@pytest.fixture
def service_namespace(k8s_api: client.ApiClient) -> str:
    """The service's namespace, existing (a server-side dry run cannot create a namespace and
    then objects in it: a real install applies the Namespace first)."""
    core = client.CoreV1Api(k8s_api)
    if not core.list_namespace(field_selector=f"metadata.name={SERVICE_NAMESPACE}").items:
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=SERVICE_NAMESPACE))
        )
    return SERVICE_NAMESPACE


@pytest.mark.parametrize("directory", [EXAMPLE, BASE], ids=["example overlay", "base"])
def test_it_applies_with_a_server_side_dry_run(service_namespace: str, directory: object) -> None:
    output = kubectl("apply", "--dry-run=server", "-k", str(directory))
    lines = [line for line in output.splitlines() if line.strip()]
    assert all(line.endswith("(server dry run)") for line in lines), output
    assert len(lines) == len(rendered(EXAMPLE))
    assert any(line.startswith("scaledobject.keda.sh/instance-service-long") for line in lines)


def test_the_example_renders_every_kind_it_promises(documents: list[Document]) -> None:
    kinds = {d["kind"] for d in documents}
    assert kinds == {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "TriggerAuthentication",
        "ScaledObject",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Job",
        "CronJob",
    }


def _rules(role: Document) -> set[Permission]:
    return {
        Permission(group, resource, frozenset(rule["verbs"]))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def test_the_roles_grant_exactly_the_permission_tables(documents: list[Document]) -> None:
    assert _rules(one(documents, "Role", "instance-service")) == set(CONSUMER_PERMISSIONS)
    assert _rules(one(documents, "Role", "instance-service-watcher")) == set(WATCHER_PERMISSIONS)
    assert not [d for d in documents if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    tenants = one(documents, "ConfigMap", "instance-service")["data"]
    assert (
        one(documents, "Role", "instance-service")["metadata"]["namespace"]
        == (tenants["INSTANCE_SERVICE_KUBERNETES__NAMESPACE"])
    )


def _container(deployment: Document) -> Document:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _env(container: Document) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


def test_one_consumer_per_queue_with_probes_grace_and_no_fixed_replicas(
    documents: list[Document],
) -> None:
    config = one(documents, "ConfigMap", "instance-service")["data"]
    budget = float(config["INSTANCE_SERVICE_CONSUMER__HANDLER_BUDGET_SECONDS"])
    grace = float(config["INSTANCE_SERVICE_CONSUMER__SHUTDOWN_GRACE_SECONDS"])
    health_port = ConsumerSettings().health_port
    for name, queue in CONSUMERS.items():
        deployment = one(documents, "Deployment", name)
        assert "replicas" not in deployment["spec"]  # KEDA owns the count
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "instance-service"
        assert pod["terminationGracePeriodSeconds"] >= grace + budget + 15
        assert pod["securityContext"]["runAsNonRoot"] is True
        container = _container(deployment)
        assert container["args"] == ["consume"]
        env = _env(container)
        assert env["INSTANCE_SERVICE_CONSUMER__QUEUES"] == queue
        assert "POD_NAME" in env
        assert container["ports"] == [{"name": "health", "containerPort": health_port}]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_one_watcher_reading_as_its_own_service_account(documents: list[Document]) -> None:
    watcher = one(documents, "Deployment", "instance-service-watcher")
    assert watcher["spec"]["replicas"] == 1
    assert watcher["spec"]["strategy"] == {"type": "Recreate"}
    pod = watcher["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "instance-service-watcher"
    container = _container(watcher)
    assert container["args"] == ["watch"]
    secrets = {
        item["valueFrom"]["secretKeyRef"]["key"]
        for item in container["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert secrets == {"INSTANCE_SERVICE_AMQP__URL", "INSTANCE_SERVICE_STORE__URL"}
    port = container["ports"][0]["containerPort"]
    assert port == WatcherSettings().health_port
    assert container["readinessProbe"]["httpGet"]["port"] == "health"
    assert not [
        d
        for d in documents
        if d["kind"] in ("PodDisruptionBudget", "ScaledObject")
        and "watcher" in d["metadata"]["name"]
    ]


def test_each_queue_scales_to_zero_counting_in_flight_work(documents: list[Document]) -> None:
    settings = ConsumerSettings()
    authentication = one(documents, "TriggerAuthentication", "instance-service-rabbitmq")
    assert authentication["spec"]["secretTargetRef"][0]["parameter"] == "host"
    scaled = [d for d in documents if d["kind"] == "ScaledObject"]
    assert {d["spec"]["scaleTargetRef"]["name"] for d in scaled} == set(CONSUMERS)
    for scaled_object in scaled:
        spec = scaled_object["spec"]
        assert spec["minReplicaCount"] == 0
        assert spec["cooldownPeriod"] > 0
        for trigger in spec["triggers"]:
            assert trigger["type"] == "rabbitmq"
            assert trigger["authenticationRef"]["name"] == "instance-service-rabbitmq"
            metadata = trigger["metadata"]
            assert metadata["protocol"] == "http"  # unacknowledged messages count
            assert metadata["mode"] == "QueueLength"
            assert metadata["activationValue"] == "0"
        # A replica per prefetch-full: each trigger's target is what one consumer holds.
        deployment = one(documents, "Deployment", spec["scaleTargetRef"]["name"])
        prefetch = _env(_container(deployment)).get(
            "INSTANCE_SERVICE_CONSUMER__PREFETCH", str(settings.prefetch)
        )
        assert {t["metadata"]["value"] for t in spec["triggers"]} == {prefetch}
        # One trigger per queue the Deployment's consumers serve (quick: also the unrouted).
        served = settings.model_copy(update={"queues": CONSUMERS[spec["scaleTargetRef"]["name"]]})
        names = sorted(t["metadata"]["queueName"] for t in spec["triggers"])
        assert names == sorted(queue.name for queue in served_queues(served))


def test_disruption_budgets_never_block_a_drain(documents: list[Document]) -> None:
    budgets = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    assert len(budgets) == len(CONSUMERS)
    labels = {
        tuple(sorted(one(documents, "Deployment", name)["spec"]["selector"]["matchLabels"].items()))
        for name in CONSUMERS
    }
    for budget in budgets:
        spec = budget["spec"]
        assert "minAvailable" not in spec
        assert spec["maxUnavailable"] >= 1
        assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        assert tuple(sorted(spec["selector"]["matchLabels"].items())) in labels


def test_backup_jobs_run_the_image_the_consumers_run(documents: list[Document]) -> None:
    image = _container(one(documents, "Deployment", "instance-service-quick"))["image"]
    assert image.startswith("registry.example.com/")  # the overlay's, not the base's
    config = one(documents, "ConfigMap", "instance-service")["data"]
    assert config["INSTANCE_SERVICE_TENANTS__SERVICE_IMAGE"] == image
    images = {_container(one(documents, "Deployment", name))["image"] for name in CONSUMERS}
    assert images == {image}


def test_every_configured_setting_is_one_the_service_accepts(
    documents: list[Document], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = one(documents, "ConfigMap", "instance-service")["data"]
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    for deployment in [*CONSUMERS, "instance-service-watcher"]:
        for key, value in _env(_container(one(documents, "Deployment", deployment))).items():
            if key.startswith("INSTANCE_SERVICE_"):
                monkeypatch.setenv(key, value)
    settings = Settings()  # extra="forbid": a misspelt key fails here
    assert settings.kubernetes.namespace == "odoo-tenants"
    monkeypatch.setenv("INSTANCE_SERVICE_CONSUMER__HANDLER_BUDGET_SECONDZ", "1")
    with pytest.raises(ValidationError):
        Settings()


def test_the_reconcile_cron_job_publishes_a_valid_fleet_reconcile(
    documents: list[Document],
) -> None:
    cron = one(documents, "CronJob", "instance-service-reconcile")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][0] == "publish"
    assert "--fresh" in container["args"]
    (mount,) = container["volumeMounts"]
    document_path = container["args"][1]
    assert document_path.startswith(mount["mountPath"] + "/")
    config_name = next(v for v in pod["volumes"] if v["name"] == mount["name"])["configMap"]
    data = one(documents, "ConfigMap", config_name["name"])["data"]
    body = data[document_path.rsplit("/", 1)[1]].encode()
    properties = AmqpProperties(
        content_type="application/cloudevents+json", message_id=json.loads(body)["id"]
    )
    command = parse_command(body, properties, ContractSettings())
    assert command.type == "odoo.fleet.reconcile.v1"
    assert re.fullmatch(r"\d+ \S+ \S+ \S+ \S+", cron["spec"]["schedule"])
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"


def test_the_backup_schedule_runs_with_the_services_settings_and_no_api_token(
    documents: list[Document],
) -> None:
    cron = one(documents, "CronJob", "instance-service-backup-schedule")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["backups", "schedule"]
    sources = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert sources == {"instance-service"}  # the ConfigMap and the Secret the consumers read
    assert pod["automountServiceAccountToken"] is False
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    # The image the consumers run: the schedule's commands are theirs to answer.
    image = _container(one(documents, "Deployment", "instance-service-quick"))["image"]
    assert container["image"] == image


def test_the_tenant_namespace_is_restricted_and_denies_by_default_as_the_local_stack(
    documents: list[Document],
) -> None:
    # One shape in both places: the local stack applies the builders, deploy/ the YAML.
    namespace = one(documents, "Namespace", "odoo-tenants")
    labels = namespace["metadata"]["labels"]
    for key, value in build_tenant_namespace("odoo-tenants")["metadata"]["labels"].items():
        assert labels[key] == value
    deny = one(documents, "NetworkPolicy", DEFAULT_DENY)
    expected = build_default_deny("odoo-tenants")
    assert deny["metadata"]["namespace"] == "odoo-tenants"
    assert deny["spec"] == expected["spec"]
