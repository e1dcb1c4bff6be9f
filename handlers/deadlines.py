"""How long a healthy operation may take, from the handlers' own waits: the terms of each
command's `healthy_within` (handlers/declarations.py).

Every wait of a handler ends by a deadline of its own: a rollout by `ready_deadline_seconds`, a
health check by `health_deadline_seconds`, an initialisation or update Job by its
activeDeadlineSeconds (`init_deadline_seconds`), a backup or restore Job by
`backup_deadline_seconds`, a customer domain's certificate by `certificate_ready_seconds`. An
operation that takes longer than the sum of its waits is not healthy: its handler would have
failed it. The watchdog's deadline of a type (its transition's
`deadline_seconds`, or settings `operations.deadline_seconds`) must therefore be at least this
sum, or a healthy operation could be cut; the settings refuse one that is shorter
(instance_service/settings.py). Each declaration sums the waits of the steps its handler's
docstring lists.
"""

from collections.abc import Callable
from dataclasses import dataclass

from k8s.settings import DomainSettings, KubernetesSettings, TenantSettings


@dataclass(frozen=True)
class Waits:
    """The longest each kind of wait of a handler lasts, in seconds, as configured."""

    ready: float
    """A rollout: to Ready pods, or to none."""
    health: float
    """/web/health over the Service."""
    init: float
    """An initialisation or update Job."""
    data_job: float
    """A backup or restore Job."""
    certificate: float = float(DomainSettings().certificate_ready_seconds)
    """A customer domain's certificate, issued."""

    @classmethod
    def of(
        cls,
        kubernetes: KubernetesSettings,
        tenants: TenantSettings,
        domains: DomainSettings | None = None,
    ) -> "Waits":
        """The waits the settings give the handlers."""
        return cls(
            ready=kubernetes.ready_deadline_seconds,
            health=kubernetes.health_deadline_seconds,
            init=float(tenants.init_deadline_seconds),
            data_job=float(tenants.backup_deadline_seconds),
            certificate=float((domains or DomainSettings()).certificate_ready_seconds),
        )

    @property
    def up(self) -> float:
        """Scale up, rollout to Ready pods, /web/health."""
        return self.ready + self.health

    @property
    def down(self) -> float:
        """Scale to zero, rollout to no pods."""
        return self.ready


Bound = Callable[[Waits], float]
"""The longest a healthy operation of one command type takes, given the waits."""


def up(waits: Waits) -> float:
    """Bring one pod up and check its health (start, unsuspend, reactivate, restart, resize)."""
    return waits.up


def down(waits: Waits) -> float:
    """Take the pods down (stop, suspend, terminate)."""
    return waits.down


def certificate(waits: Waits) -> float:
    """A customer domain's certificate issued (domain.add)."""
    return waits.certificate


def no_wait(_waits: Waits) -> float:
    """Nothing awaited: Kubernetes requests only (domain.remove)."""
    return 0.0
