"""One tenant never reaches another: network, backups and databases, each proven on real parts.

- The network: the NetworkPolicies the service made for its tenants, read from the real API
  server by a real policy engine (cyclonus, devstack/cyclonus.py), which rules on every flow of
  the truth table. The local stack runs every server on 127.0.0.1, which no policy could tell
  apart, so the tenants are provisioned with the production shape from settings: the tenant
  PostgreSQL, the service's own PostgreSQL, the API server and the broker at distinct addresses.
  The local stack does not enforce policies (no network plugin), so the provisions work as before.
- Backups: the key a tenant's Jobs hold is refused by the real object storage on every other
  tenant's prefix (list, read, write) and for deletes; a tenant that links its filestore to
  another's files gets a failed backup and no object.
- PostgreSQL: tenant A's credentials are refused on B's database and on the maintenance ones.
"""

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from devstack import cyclonus
from devstack.cyclonus import Endpoint, Flow
from k8s.kinds import NETWORK_POLICY, POD
from objectstore.client import StorageRefusedError, call, s3_client
from tests import stack
from tests.handlers.checks import (
    backup_key,
    connect_as_tenant,
    filestore,
    found,
    names_of,
    objects_of,
    stored_object,
    unfinished_uploads,
)
from tests.handlers.harness import Lifecycle, event_kind, new_instance, provision_data
from tests.handlers.harness import tenant_settings as local_tenants

pytestmark = [pytest.mark.k8s, pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.objectstore]

T = "odoo.instance."
TENANT_DATABASE = "10.20.0.5"
STATE_DATABASE = "10.20.0.9"
API_SERVER = "34.120.7.1"  # a public endpoint, as managed clusters have
API_SERVICE = "10.96.0.1"  # the `kubernetes` Service
METADATA = "169.254.169.254"
PUBLIC_SMTP = "142.250.102.27"
OBJECT_STORAGE = "10.20.0.7"
SOME_WEBSITE = "93.184.215.14"
PRODUCTION = local_tenants(
    database_addresses=(f"{TENANT_DATABASE}/32",),
    api_server_addresses=(f"{API_SERVER}/32",),
    cluster_cidrs=("10.244.0.0/16", "10.96.0.0/12"),
    backup_storage_addresses=(f"{OBJECT_STORAGE}/32",),
    backup_storage_ports=(443,),
)
STAGING = PRODUCTION.model_copy(update={"mail_egress": False})
PG = PRODUCTION.database_port  # the local server's port: the backup Job really connects to it
BROKER = Endpoint("10.244.7.7", "rabbitmq", {"app.kubernetes.io/name": "rabbitmq"})
INGRESS = Endpoint("10.244.8.8", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
HEALTH = Endpoint("10.244.9.9", "instance-service", {"app.kubernetes.io/name": "instance-service"})
DNS = Endpoint("10.244.0.10", "kube-system", {"k8s-app": "kube-dns"})
OUTSIDE = Endpoint("10.244.6.6", "default", {"app": "anything"})


def _provisioned(driver: Lifecycle) -> str:
    instance_id, subdomain = new_instance()
    event = driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))
    assert event_kind(event) == "provisioned", event["data"]
    return instance_id


def _pod(driver: Lifecycle, selector: str, fallback_ip: str) -> Endpoint:
    """The pod the cluster holds (its real labels), as a flow's end."""
    pod: Any
    (pod, *_) = driver.platform.cluster().objects(POD, selector=selector)
    return Endpoint(
        pod.status.pod_ip or fallback_ip, driver.namespace, dict(pod.metadata.labels or {})
    )


def _server(driver: Lifecycle, instance_id: str, ip: str) -> Endpoint:
    return _pod(
        driver,
        f"app.kubernetes.io/instance={names_of(instance_id).base},"
        "app.kubernetes.io/component=server",
        ip,
    )


def _job_pod(driver: Lifecycle, instance_id: str, component: str, ip: str) -> Endpoint:
    selector = f"odoo.saas/instance-id={instance_id},app.kubernetes.io/component={component}"
    return _pod(driver, selector, ip)


def _backup(driver: Lifecycle, instance_id: str) -> dict[str, Any]:
    data = {"instance_id": instance_id, "backup_id": str(uuid.uuid4())}
    return driver.run(f"{T}backup.v1", data)


def test_the_policies_the_service_made_hold_the_truth_table(
    driver: Lifecycle, capsys: pytest.CaptureFixture[str]
) -> None:
    driver.reconfigure(tenants=PRODUCTION)
    a, b = _provisioned(driver), _provisioned(driver)
    assert event_kind(_backup(driver, a)) == "backed_up"
    driver.reconfigure(tenants=STAGING)
    clone = _provisioned(driver)  # a staging environment's copy: what a clone gets
    for instance_id in (a, b, clone):
        names = names_of(instance_id)
        found(driver, NETWORK_POLICY, names.base)
        found(driver, NETWORK_POLICY, names.job_policy)

    a_server, b_server = _server(driver, a, "10.244.1.1"), _server(driver, b, "10.244.2.1")
    clone_server = _server(driver, clone, "10.244.3.1")
    a_init = _job_pod(driver, a, "database-init", "10.244.1.2")
    a_backup = _job_pod(driver, a, "backup", "10.244.1.3")
    b_init = _job_pod(driver, b, "database-init", "10.244.2.2")

    def outside(ip: str) -> Endpoint:
        return Endpoint(ip)

    rows: list[tuple[str, Flow, bool]] = [
        ("A's server -> B's server :8069", Flow(a_server, b_server, 8069), False),
        ("B's server -> A's server :8072", Flow(b_server, a_server, 8072), False),
        ("B's init Job -> A's server :8069", Flow(b_init, a_server, 8069), False),
        ("A's init Job -> the internet :443", Flow(a_init, outside(SOME_WEBSITE), 443), False),
        ("A's backup Job -> the internet :443", Flow(a_backup, outside(SOME_WEBSITE), 443), False),
        ("A's init Job -> public SMTP :587", Flow(a_init, outside(PUBLIC_SMTP), 587), False),
        ("A's server -> its database :PG", Flow(a_server, outside(TENANT_DATABASE), PG), True),
        ("A's init Job -> its database :PG", Flow(a_init, outside(TENANT_DATABASE), PG), True),
        (
            "A's backup Job -> its database :PG",
            Flow(a_backup, outside(TENANT_DATABASE), PG),
            True,
        ),
        (
            "A's backup Job -> object storage :443",
            Flow(a_backup, outside(OBJECT_STORAGE), 443),
            True,
        ),
        (
            "A's server -> object storage :443",
            Flow(a_server, outside(OBJECT_STORAGE), 443),
            False,
        ),
        (
            "A's server -> public SMTP :587 (production)",
            Flow(a_server, outside(PUBLIC_SMTP), 587),
            True,
        ),
        (
            "A's server -> public HTTPS :443 (production)",
            Flow(a_server, outside(SOME_WEBSITE), 443),
            True,
        ),
        (
            "clone's server -> public SMTP :587",
            Flow(clone_server, outside(PUBLIC_SMTP), 587),
            False,
        ),
        (
            "clone's server -> its database :PG",
            Flow(clone_server, outside(TENANT_DATABASE), PG),
            True,
        ),
        ("A's server -> cluster DNS :53", Flow(a_server, DNS, 53, "UDP"), True),
        ("ingress controller -> A's server :8069", Flow(INGRESS, a_server, 8069), True),
        ("service health check -> A's server :8069", Flow(HEALTH, a_server, 8069), True),
        ("service health check -> A's server :8072", Flow(HEALTH, a_server, 8072), False),
        ("another namespace's pod -> A's server :8069", Flow(OUTSIDE, a_server, 8069), False),
        ("another namespace's pod -> A's init Job :8069", Flow(OUTSIDE, a_init, 8069), False),
    ]
    tenant_pods = {
        "A's server": a_server,
        "A's init Job": a_init,
        "A's backup Job": a_backup,
        "B's server": b_server,
        "clone's server": clone_server,
    }
    forbidden = {
        "cloud metadata 169.254.169.254 :80": (outside(METADATA), 80),
        f"the API server {API_SERVER} :443": (outside(API_SERVER), 443),
        f"the API Service {API_SERVICE} :443": (outside(API_SERVICE), 443),
        f"the state database {STATE_DATABASE} :5432": (outside(STATE_DATABASE), 5432),
        f"the state database {STATE_DATABASE} :PG": (outside(STATE_DATABASE), PG),
        "RabbitMQ :5672": (BROKER, 5672),
    }
    for who, pod in tenant_pods.items():
        for what, (where, port) in forbidden.items():
            rows.append((f"{who} -> {what}", Flow(pod, where, port), False))

    verdicts = cyclonus.verdicts(
        stack.require("k8s").kubeconfig, driver.namespace, [flow for _, flow, _ in rows]
    )
    rows = [(name.replace(":PG", f":{PG}"), flow, expected) for name, flow, expected in rows]
    width = max(len(name) for name, _, _ in rows)
    said = {True: "allowed", False: "denied"}
    table = [f"{'flow':<{width}}  expected  cyclonus"]
    for (name, _, expected), verdict in zip(rows, verdicts, strict=True):
        table.append(f"{name:<{width}}  {said[expected]:<8}  {said[verdict]}")
    with capsys.disabled():  # in every run's output, not only a failing one's
        print("\n" + "\n".join(table))
    wrong = [
        name
        for (name, _, expected), verdict in zip(rows, verdicts, strict=True)
        if verdict != expected
    ]
    assert wrong == []


def test_a_tenants_job_key_reaches_its_own_prefix_only(driver: Lifecycle) -> None:
    a, b = _provisioned(driver), _provisioned(driver)
    assert event_kind(_backup(driver, a)) == "backed_up"
    b_backup = _backup(driver, b)
    assert event_kind(b_backup) == "backed_up"
    a_key, b_key = backup_key(driver, a), backup_key(driver, b)
    assert a_key[0] != b_key[0]
    settings = driver.backups
    jobs = s3_client(settings.endpoint_url, settings.region, *a_key)  # what A's Jobs hold
    bucket, b_object = settings.bucket, b_backup["data"]["location"]["key"]
    own, theirs = driver.storage.instance_prefix(a), driver.storage.instance_prefix(b)

    def answer(request: Callable[[], Any]) -> str:
        try:
            call("request", request)
        except StorageRefusedError as refused:
            return refused.code
        return "allowed"

    # Refused by the real server: B's prefix (list, read, write), the whole bucket, and even
    # deleting its own backups (pruning is the service's).
    refusals = {
        "list B's prefix": answer(lambda: jobs.list_objects_v2(Bucket=bucket, Prefix=theirs)),
        "read B's backup": answer(lambda: jobs.get_object(Bucket=bucket, Key=b_object)),
        "write into B's prefix": answer(
            lambda: jobs.put_object(Bucket=bucket, Key=f"{theirs}planted", Body=b"x")
        ),
        "overwrite B's backup": answer(
            lambda: jobs.put_object(Bucket=bucket, Key=b_object, Body=b"x")
        ),
        "list the bucket": answer(lambda: jobs.list_objects_v2(Bucket=bucket)),
        "delete its own backup": answer(
            lambda: jobs.delete_object(Bucket=bucket, Key=objects_of(driver, a)[0])
        ),
    }
    assert refusals == dict.fromkeys(refusals, "AccessDenied"), refusals
    assert answer(lambda: jobs.list_objects_v2(Bucket=bucket, Prefix=own)) == "allowed"
    assert jobs.list_buckets().get("Buckets", []) == []  # answered, with nothing in it
    assert objects_of(driver, b) == [b_object]  # nothing planted, B's backup as it was
    assert (
        hashlib.sha256(stored_object(driver, b_backup_uri(b_backup))).hexdigest()
        == (b_backup["data"]["sha256"])
    )

    # A's Job pod holds A's key only (from A's Secret) and mounts no backup volume.
    pod: Any
    (pod, *_) = driver.platform.cluster().objects(
        POD, selector=f"odoo.saas/instance-id={a},app.kubernetes.io/component=backup"
    )
    container = pod.spec.containers[0]
    refs = {e.value_from.secret_key_ref.name for e in container.env if e.value_from is not None}
    assert refs == {names_of(a).secret, names_of(a).backup_access, settings.keyset_secret}
    assert {m.name for m in container.volume_mounts} == {"data", "scratch"}


def b_backup_uri(event: dict[str, Any]) -> str:
    location = event["data"]["location"]
    return f"s3://{location['bucket']}/{location['key']}"


def test_a_filestore_linked_to_another_tenants_files_backs_up_nothing(driver: Lifecycle) -> None:
    a, b = _provisioned(driver), _provisioned(driver)
    theirs = filestore(driver, b)
    theirs.mkdir(parents=True, exist_ok=True)
    (theirs / "b-secret.txt").write_bytes(b"B's own file")
    mine = filestore(driver, a)
    mine.mkdir(parents=True, exist_ok=True)
    (mine / "a-file.txt").write_bytes(b"A's own file")
    assert event_kind(_backup(driver, a)) == "backed_up"
    before = objects_of(driver, a)

    # The attack: A's filestore becomes a link to B's files (on this host, where the job runner
    # lays out both volumes).
    for child in sorted(mine.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    mine.rmdir()
    mine.symlink_to(theirs, target_is_directory=True)
    failed = _backup(driver, a)
    assert event_kind(failed) == "command.failed", failed
    assert failed["data"]["error"]["code"] == "backup_failed"
    assert "filestore_unsafe" in failed["data"]["error"]["message"]
    assert failed["data"]["rolled_back"] is True
    assert objects_of(driver, a) == before  # nothing new, nothing partial kept
    assert unfinished_uploads(driver, a) == []


def test_a_tenants_credentials_open_its_own_database_only(driver: Lifecycle) -> None:
    a, b = _provisioned(driver), _provisioned(driver)
    connect_as_tenant(driver, a, names_of(a).database)
    for database in (names_of(b).database, "postgres", "template1"):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            connect_as_tenant(driver, a, database)
