"""delete: the instance's objects, then (unless keep_data) its volume, database and Secret.

    final-*      (unless final_backup is false) a backup, recorded; kept after the delete
    workload     Deployment deleted; workload-gone: watched until gone
    exposure     Ingress, Service, both NetworkPolicies and every Job of the instance deleted
    access       the instance's object-storage identity removed, its backup-access Secret too
    volume       PVC deleted; volume-gone: watched until gone   (not with keep_data)
    database     tenant database and role dropped          (not with keep_data)
    credentials  Secret deleted                            (not with keep_data)

With keep_data the Secret stays too: the kept database is useless without its password.
The final backup stays in object storage and in the `backups` table (label "final backup before
delete") for `final_backup_days`; if it fails, nothing is deleted. With its Jobs gone, nothing
needs the instance's scoped key: the service's own key reads and prunes its backups.
"""

from handlers.backups import safety_backup_id
from handlers.declarations import Declaration, Queue
from handlers.jobs import backup_steps, storage_call
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.results import Completed, HandlerContext, HandlerResult
from handlers.specs import instance_spec
from handlers.steps import Step, StepOutcome, run_steps
from handlers.waiting import watch_step
from handlers.waits import WaitingFor
from k8s.kinds import (
    DEPLOYMENT,
    INGRESS,
    JOB,
    NETWORK_POLICY,
    PVC,
    SECRET,
    SERVICE,
    Kind,
    Object,
    name_of,
)
from k8s.spec import InstanceSpec
from messages.commands import DeleteCommand
from messages.errors import PermanentError
from messages.events import DeletedEvent, InstanceEventData
from store.ledger import Ledger
from store.lifecycle import InstanceStatus, Transition
from store.retention import BackupKind
from store.settings import HOUR


class Delete:
    """The delete handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def _gone(self, step: str, kind: Kind[Object], name: str, cluster: Cluster) -> Step:
        """Wait until the object is gone, within the ready deadline."""
        namespace = self.platform.namespace
        deadline = self.platform.kubernetes.ready_deadline_seconds
        gone = WaitingFor.gone(kind, name, f"{kind} {name} gone")

        def expired() -> PermanentError:
            left = cluster.get(kind, name)
            finalizers = ", ".join(getattr(left.metadata, "finalizers", None) or []) if left else ""
            return PermanentError(
                "not_deleted",
                f"{kind} {namespace}/{name} still exists {deadline:g} s after its deletion "
                f"(finalizers: {finalizers or 'none'}); a pod that still uses it keeps it",
            )

        return watch_step(step, deadline, [gone], cluster, expired)

    def _steps(
        self,
        command: DeleteCommand,
        spec: InstanceSpec,
        cluster: Cluster,
        ledger: Ledger,
        operation_id: str,
    ) -> tuple[Step, ...]:
        """The delete, in the order of the module's docstring."""
        platform, names = self.platform, spec.names

        def workload(_: Progress) -> StepOutcome:
            cluster.delete(DEPLOYMENT, names.base)
            return None

        def exposure(_: Progress) -> StepOutcome:
            for kind, name in (
                (INGRESS, names.base),
                (SERVICE, names.base),
                (NETWORK_POLICY, names.base),
                (NETWORK_POLICY, names.job_policy),
            ):
                cluster.delete(kind, name)
            # Every Job of the instance (init, update, backup, restore): their pods would keep
            # the data volume from going.
            ours = f"app.kubernetes.io/instance={names.base}"
            for job in cluster.objects(JOB, selector=ours):
                cluster.delete(JOB, name_of(job))
            return None

        def access(_: Progress) -> StepOutcome:
            storage_call(
                f"access of instance {spec.instance_id}",
                lambda: platform.backups.revoke(spec.instance_id),
                rolled_back=False,
            )
            cluster.delete(SECRET, names.backup_access)
            return None

        def volume(_: Progress) -> StepOutcome:
            cluster.delete(PVC, names.volume)
            return None

        def database(_: Progress) -> StepOutcome:
            platform.databases.drop(names.role, names.database)
            return None

        def credentials(_: Progress) -> StepOutcome:
            cluster.delete(SECRET, names.secret)
            return None

        final = backup_steps(
            "final",
            spec,
            safety_backup_id(operation_id, "final"),
            "final backup before delete",
            platform,
            cluster,
            ledger,
            kind=BackupKind.FINAL,
            rolled_back=True,  # nothing is deleted before the backup is good
        )
        data = (
            Step("volume", volume),
            # The PVC protection finalizer holds the claim until no pod uses it.
            self._gone("volume-gone", PVC, names.volume, cluster),
            Step("database", database),
            Step("credentials", credentials),
        )
        return (
            *(final if command.data.final_backup else ()),
            Step("workload", workload),
            self._gone("workload-gone", DEPLOYMENT, names.base, cluster),
            Step("exposure", exposure),
            Step("access", access),
            *(() if command.data.keep_data else data),
        )

    def __call__(self, command: DeleteCommand, context: HandlerContext) -> HandlerResult:
        """Remove what the instance has, in an order that never strands a running pod."""
        instance = context.admission.instance
        if instance is None:
            raise RuntimeError("delete admitted without its instance")
        spec, platform = instance_spec(instance), self.platform
        cluster = platform.cluster()
        progress = Progress(command, context, platform.faults, cluster)
        steps = self._steps(command, spec, cluster, context.ledger, progress.operation_id)
        waiting = run_steps(steps, progress)
        if waiting is not None:
            return waiting
        progress.finish()
        data = InstanceEventData(instance_id=spec.instance_id)
        return Completed(DeletedEvent.caused_by(command, data))


S = InstanceStatus

DELETE = Declaration(
    model=DeleteCommand,
    queue=Queue.LONG,
    transition=Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.SUSPENDED, S.TERMINATED, S.ERROR}),
        S.DELETING,
        S.DELETED,
        lifts=True,
        deadline_seconds=4 * HOUR,
    ),
    event=DeletedEvent,
    # a final backup, the Deployment gone, the volume gone
    healthy_within=lambda waits: waits.data_job + 2 * waits.ready,
    locks=True,
    handler=Delete,
)
