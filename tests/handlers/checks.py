"""What the lifecycle tests look at: the instance's objects, pods, health and tenant database."""

import base64
from pathlib import Path
from typing import Any

import psycopg
from kubernetes import client

from devstack.layout import default_layout
from handlers.waiting import selector_of
from k8s.health import check_health
from k8s.kinds import DEPLOYMENT, POD, SECRET, Kind
from k8s.names import InstanceNames
from objectstore.client import StorageRefusedError, call, s3_client
from objectstore.locations import ObjectLocation
from tests.handlers.harness import Lifecycle
from tests.tenant_specs import tenant_spec


def names_of(instance_id: str) -> InstanceNames:
    """The instance's object names."""
    return tenant_spec(instance_id=instance_id).names


def found(driver: Lifecycle, kind: Kind[object], name: str) -> Any:
    """An object of the namespace that must exist."""
    obj = driver.platform.cluster().get(kind, name)
    assert obj is not None, f"{kind} {name} does not exist"
    return obj


def deployment(driver: Lifecycle, instance_id: str) -> Any:
    """The instance's Deployment (it must exist)."""
    return found(driver, DEPLOYMENT, names_of(instance_id).base)


def pods(driver: Lifecycle, instance_id: str) -> list[Any]:
    """The instance's server pods that are not being deleted."""
    spec = tenant_spec(instance_id=instance_id)
    found: list[Any] = driver.platform.cluster().objects(POD, selector=selector_of(spec))
    return [p for p in found if p.metadata.deletion_timestamp is None]


def serving(driver: Lifecycle, instance_id: str) -> bool:
    """Whether /web/health passes over the Service right now."""
    url = names_of(instance_id).internal_url(driver.namespace)
    return check_health(
        url, driver.platform.resolver, request_timeout=2, deadline_seconds=0
    ).healthy


def exists(driver: Lifecycle, kind: Kind[object], name: str) -> bool:
    """Whether an object of the namespace exists."""
    return driver.platform.cluster().get(kind, name) is not None


def tenant_password(driver: Lifecycle, instance_id: str) -> str:
    """The database password from the instance's Secret."""
    secret: Any = driver.platform.cluster().get(SECRET, names_of(instance_id).secret)
    assert secret is not None
    return base64.b64decode(secret.data["database-password"]).decode()


def connect_as_tenant(driver: Lifecycle, instance_id: str, database: str) -> None:
    """Connect as the tenant's role to `database` (raises if refused)."""
    names = names_of(instance_id)
    with psycopg.connect(
        host="127.0.0.1",
        port=default_layout().ports.postgres,
        dbname=database,
        user=names.role,
        password=tenant_password(driver, instance_id),
        connect_timeout=5,
    ) as connection:
        assert connection.execute("SELECT current_user").fetchone() == (names.role,)


def tenant_database_exists(driver: Lifecycle, instance_id: str) -> bool:
    """Whether the tenant's database and role are there."""
    names = names_of(instance_id)
    return driver.databases.exists(names.role, names.database)


def replica_sets(driver: Lifecycle, instance_id: str) -> list[Any]:
    """The ReplicaSets of the instance's Deployment (one per pod template it ran)."""
    spec = tenant_spec(instance_id=instance_id)
    apps = client.AppsV1Api(driver.api)
    return list(
        apps.list_namespaced_replica_set(driver.namespace, label_selector=selector_of(spec)).items
    )


def host_path(driver: Lifecycle, claim: str) -> Path:
    """The host directory behind a claim (the devstack provisioner's hostPath volume)."""
    core = client.CoreV1Api(driver.api)
    bound = core.read_namespaced_persistent_volume_claim(claim, driver.namespace)
    assert bound.spec is not None
    assert bound.spec.volume_name
    volume = core.read_persistent_volume(bound.spec.volume_name)
    assert volume.spec is not None
    assert volume.spec.host_path is not None
    return Path(str(volume.spec.host_path.path))


def filestore(driver: Lifecycle, instance_id: str) -> Path:
    """The instance's filestore on the host."""
    names = names_of(instance_id)
    return host_path(driver, names.volume) / "filestore" / names.database


def tenant_sql(driver: Lifecycle, instance_id: str, statement: str) -> list[Any]:
    """Run SQL in the tenant's database as the tenant."""
    names = names_of(instance_id)
    with psycopg.connect(
        host="127.0.0.1",
        port=default_layout().ports.postgres,
        dbname=names.database,
        user=names.role,
        password=tenant_password(driver, instance_id),
        autocommit=True,
    ) as connection:
        cursor = connection.execute(statement.encode())
        return cursor.fetchall() if cursor.description else []


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under a directory, by relative path."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _admin_s3(driver: Lifecycle) -> Any:
    settings = driver.backups
    secret = settings.secret_access_key.get_secret_value() if settings.secret_access_key else ""
    return s3_client(settings.endpoint_url, settings.region, settings.access_key_id or "", secret)


def stored_object(driver: Lifecycle, uri: str) -> bytes:
    """An object's bytes, read with the service's key (None of a Job's)."""
    location = ObjectLocation.parse(uri)
    assert location is not None, uri
    body = _admin_s3(driver).get_object(Bucket=location.bucket, Key=location.key)["Body"]
    return bytes(body.read())


def replace_object(driver: Lifecycle, uri: str, data: bytes) -> None:
    """Put `data` where the object is (bit rot, or a tenant's own Job overwriting it)."""
    location = ObjectLocation.parse(uri)
    assert location is not None, uri
    _admin_s3(driver).put_object(Bucket=location.bucket, Key=location.key, Body=data)


def objects_of(driver: Lifecycle, instance_id: str) -> list[str]:
    """The keys of every object under the instance's prefix."""
    prefix = driver.storage.instance_prefix(instance_id)
    listed = _admin_s3(driver).list_objects_v2(Bucket=driver.backups.bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def unfinished_uploads(driver: Lifecycle, instance_id: str) -> list[str]:
    """Keys of the multipart uploads under the instance's prefix that were never completed."""
    prefix = driver.storage.instance_prefix(instance_id)
    listed = _admin_s3(driver).list_multipart_uploads(Bucket=driver.backups.bucket, Prefix=prefix)
    return sorted(upload["Key"] for upload in listed.get("Uploads", []))


def backup_key(driver: Lifecycle, instance_id: str) -> tuple[str, str]:
    """The scoped key in the instance's backup-access Secret (what its data Jobs use)."""
    secret: Any = driver.platform.cluster().get(SECRET, names_of(instance_id).backup_access)
    assert secret is not None
    decoded = {key: base64.b64decode(value).decode() for key, value in secret.data.items()}
    return decoded["access-key-id"], decoded["secret-access-key"]


def can_list_own_prefix(driver: Lifecycle, instance_id: str, key: tuple[str, str]) -> bool:
    """Whether the object storage takes `key` for listing the instance's own prefix."""
    settings = driver.backups
    jobs = s3_client(settings.endpoint_url, settings.region, *key)
    prefix = driver.storage.instance_prefix(instance_id)
    try:
        call("list", lambda: jobs.list_objects_v2(Bucket=settings.bucket, Prefix=prefix))
    except StorageRefusedError as refused:
        if refused.code in ("InvalidAccessKeyId", "AccessDenied"):
            return False
        raise
    return True
