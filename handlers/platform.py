"""What the lifecycle handlers act on: the cluster, tenant databases and health checks, as ports.

The entry point builds one Platform from settings and hands it to every handler; unit tests
build one from fakes of these ports. Each handler call takes a fresh cluster view, bound to the
tenant namespace, so the Kubernetes requests it makes are counted per operation.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from k8s.apply import Document
from k8s.health import Resolver
from k8s.kinds import Kind
from k8s.settings import DomainSettings, ImportSettings, KubernetesSettings, TenantSettings
from k8s.workload import Manifest
from objectstore.access import AccessKey
from objectstore.locations import ObjectLocation
from objectstore.settings import ObjectStorageSettings
from objectstore.storage import StoredObject
from store.settings import RetentionSettings

T = TypeVar("T")


class Cluster(Protocol):
    """The Kubernetes operations handlers need, on the objects of one namespace (the tenants'),
    reached by typed kind (k8s/kinds.py); k8s.apply.Kubernetes is the real one."""

    requests: Counter[tuple[str, str]]

    @property
    def namespace(self) -> str:
        """The namespace every call acts in."""

    def apply(self, kind: Kind[T], manifest: Manifest) -> T:
        """Server-side apply; the object as applied."""

    def get(self, kind: Kind[T], name: str) -> T | None:
        """The object, or None."""

    def objects(self, kind: Kind[T], *, selector: str) -> list[T]:
        """Objects whose labels match the label `selector`."""

    def documents(self, kind: Kind[object], *, selector: str) -> list[Document]:
        """Objects whose labels match, as manifests, in one request."""

    def scale(self, name: str, replicas: int, *, absent_ok: bool = False) -> bool:
        """Set a Deployment's replicas; False when absent (with absent_ok)."""

    def restart(self, name: str, at: datetime | None = None) -> None:
        """New pods of a Deployment through a pod-template annotation."""

    def delete(self, kind: Kind[object], name: str) -> None:
        """Delete with dependants; absent is fine."""

    def wait_for(
        self, kind: Kind[T], name: str, condition: Callable[[T], bool], deadline_seconds: float
    ) -> T:
        """The object once `condition` holds; WaitTimeoutError otherwise."""

    def wait_gone(self, kind: Kind[object], name: str, deadline_seconds: float) -> None:
        """Return once the object no longer exists; WaitTimeoutError otherwise."""

    def wait_none(self, kind: Kind[object], *, selector: str, deadline_seconds: float) -> None:
        """Return once nothing matches the label `selector`; WaitTimeoutError otherwise."""


class TenantDatabasePort(Protocol):
    """Tenant roles and databases (store.tenant_database.TenantDatabases is the real one)."""

    def ensure(self, role: str, database: str, password: str) -> None:
        """Make or bring in line the role and its database."""

    def drop(self, role: str, database: str) -> None:
        """Remove the database and the role."""

    def ping(self) -> None:
        """Check that the admin role can connect (at start-up)."""

    def open_maintenance_databases(self) -> list[str]:
        """The maintenance databases every role may still connect to (at start-up)."""


class BackupStoragePort(Protocol):
    """Object storage of backups, with the service's own key (objectstore.backups.ObjectBackups
    is the real one)."""

    @property
    def settings(self) -> ObjectStorageSettings:
        """Endpoint, bucket, prefix, keyset Secret name."""

    @property
    def keyset(self) -> str:
        """The keyset the data Jobs seal and open with."""

    def location(self, instance_id: str, backup_id: str) -> ObjectLocation:
        """Where a backup of the instance goes."""

    def instance_prefix(self, instance_id: str) -> str:
        """Every key of the instance starts with this."""

    def grant(self, instance_id: str, current_key_id: str | None) -> AccessKey | None:
        """The instance's scoped key: None keeps `current_key_id`, else a new one."""

    def revoke(self, instance_id: str) -> None:
        """Remove the instance's identity (absent is fine)."""

    def incoming(self, instance_id: str, name: str) -> ObjectLocation:
        """Where an object copied in for the instance's next data Job goes."""

    def archive(self, key: str) -> ObjectLocation:
        """An object of the import bucket."""

    def copy(self, source: ObjectLocation, target: ObjectLocation) -> None:
        """Copy an object on the server."""

    def size(self, location: ObjectLocation) -> int | None:
        """The object's size, or None when absent."""

    def describe(self, location: ObjectLocation) -> StoredObject | None:
        """The object's size and checksum tag, or None when absent."""

    def remove(self, locations: list[ObjectLocation]) -> None:
        """Delete objects (absent ones are fine)."""

    def abort_uploads(self, prefix: str) -> int:
        """Abort unfinished uploads of keys under `prefix`; how many."""


@dataclass(frozen=True)
class ImportArchives:
    """The import bucket as admission looks at it (store.admission.Archives): does the archive
    an import names exist."""

    backups: BackupStoragePort

    @property
    def bucket(self) -> str:
        """The bucket imports are read from."""
        return self.backups.settings.import_bucket

    def size(self, key: str) -> int | None:
        """The archive's size, or None when there is no such object."""
        return self.backups.size(self.backups.archive(key))


class Faults(Protocol):
    """Fault injection: called after each step's effects, before the step is recorded.

    Production passes NoFaults; tests pass one that stops the handler dead at a chosen step,
    as a crash would, to prove that a redelivery converges.
    """

    def reached(self, command_type: str, step: str) -> None:
        """A step's effects are done and about to be recorded."""


class NoFaults:
    """Nothing injected."""

    def reached(self, command_type: str, step: str) -> None:
        """Do nothing."""


@dataclass(frozen=True)
class Platform:
    """Everything a lifecycle handler may touch, and the settings that shape it."""

    cluster: Callable[[], Cluster]
    databases: TenantDatabasePort
    resolver: Resolver
    kubernetes: KubernetesSettings
    tenants: TenantSettings
    backups: BackupStoragePort
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    imports: ImportSettings = field(default_factory=ImportSettings)
    domains: DomainSettings = field(default_factory=DomainSettings)
    faults: Faults = field(default_factory=NoFaults)

    @property
    def namespace(self) -> str:
        """Where tenant objects live."""
        return self.kubernetes.namespace
