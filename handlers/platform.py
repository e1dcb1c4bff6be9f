"""What the lifecycle handlers act on: the cluster, tenant databases and health checks, as ports.

The entry point builds one Platform from settings and hands it to every handler; unit tests
build one from fakes of these ports. Each handler call takes a fresh cluster view, so the
Kubernetes requests it makes are counted per operation.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from k8s.health import Resolver
from k8s.settings import KubernetesSettings, TenantSettings
from k8s.workload import Manifest


class Cluster(Protocol):
    """The Kubernetes operations handlers need (k8s.apply.Kubernetes is the real one)."""

    requests: Counter[tuple[str, str]]

    def apply(self, manifest: Manifest) -> Any:
        """Server-side apply."""

    def get(self, kind: str, name: str, namespace: str) -> Any | None:
        """The object, or None."""

    def list_labelled(self, kind: str, namespace: str, label_selector: str) -> list[Any]:
        """Objects whose labels match."""

    def documents(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Objects whose labels match, as manifests, in one request."""

    def scale(self, name: str, namespace: str, replicas: int, *, absent_ok: bool = False) -> bool:
        """Set a Deployment's replicas; False when absent (with absent_ok)."""

    def restart(self, name: str, namespace: str, at: Any = None) -> None:
        """New pods through a pod-template annotation."""

    def delete(self, kind: str, name: str, namespace: str) -> None:
        """Delete with dependants; absent is fine."""

    def wait_for(
        self,
        kind: str,
        name: str,
        namespace: str,
        condition: Callable[[Any], bool],
        deadline_seconds: float,
    ) -> Any:
        """The object once `condition` holds; WaitTimeoutError otherwise."""

    def wait_gone(self, kind: str, name: str, namespace: str, deadline_seconds: float) -> None:
        """Return once the object no longer exists; WaitTimeoutError otherwise."""

    def wait_none(
        self, kind: str, namespace: str, label_selector: str, deadline_seconds: float
    ) -> None:
        """Return once nothing matches the labels; WaitTimeoutError otherwise."""


class TenantDatabasePort(Protocol):
    """Tenant roles and databases (store.tenant_database.TenantDatabases is the real one)."""

    def ensure(self, role: str, database: str, password: str) -> None:
        """Make or bring in line the role and its database."""

    def drop(self, role: str, database: str) -> None:
        """Remove the database and the role."""

    def ping(self) -> None:
        """Check that the admin role can connect (at start-up)."""


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
    faults: Faults = field(default_factory=NoFaults)

    @property
    def namespace(self) -> str:
        """Where tenant objects live."""
        return self.kubernetes.namespace
