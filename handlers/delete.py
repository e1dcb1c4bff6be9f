"""delete: the instance's objects, then (unless keep_data) its volume, database and Secret.

    final-*      (unless final_backup is false) a backup, recorded; kept after the delete
    workload     Deployment deleted; workload-gone: watched until gone
    exposure     Ingress, Service, NetworkPolicy and every Job of the instance deleted
    volume       PVC deleted; volume-gone: watched until gone   (not with keep_data)
    database     tenant database and role dropped          (not with keep_data)
    credentials  Secret deleted                            (not with keep_data)

With keep_data the Secret stays too: the kept database is useless without its password.
The final backup stays on the backup volume and in the `backups` table (label "final backup
before delete"); if it fails, nothing is deleted.
"""

from handlers.backups import safety_backup_id
from handlers.declarations import Declaration, Queue
from handlers.jobs import take_backup
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.results import Completed, Continue, HandlerContext, HandlerResult
from handlers.specs import instance_spec
from handlers.waiting import watch_step
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
from messages.commands import DeleteCommand
from messages.errors import PermanentError
from messages.events import DeletedEvent, InstanceEventData
from store.lifecycle import InstanceStatus, Transition
from store.settings import HOUR


class Delete:
    """The delete handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def _gone(
        self, step: str, kind: Kind[Object], name: str, progress: Progress, cluster: Cluster
    ) -> Continue | None:
        """Wait (watching) until the object is gone, within the ready deadline."""
        namespace = self.platform.namespace
        deadline = self.platform.kubernetes.ready_deadline_seconds

        def wait(window: float, _until: float) -> None:
            cluster.wait_gone(kind, name, window)

        def expired() -> PermanentError:
            left = cluster.get(kind, name)
            finalizers = ", ".join(getattr(left.metadata, "finalizers", None) or []) if left else ""
            return PermanentError(
                "not_deleted",
                f"{kind} {namespace}/{name} still exists {deadline:g} s after its deletion "
                f"(finalizers: {finalizers or 'none'}); a pod that still uses it keeps it",
            )

        return watch_step(step, deadline, progress, wait, expired)

    def __call__(self, command: DeleteCommand, context: HandlerContext) -> HandlerResult:
        """Remove what the instance has, in an order that never strands a running pod."""
        instance = context.admission.instance
        if instance is None:
            raise RuntimeError("delete admitted without its instance")
        spec, platform = instance_spec(instance), self.platform
        names = spec.names
        cluster = platform.cluster()
        progress = Progress(command, context, platform.faults, cluster)
        if command.data.final_backup and context.operation_id is not None:
            final = take_backup(
                "final",
                spec,
                safety_backup_id(context.operation_id, "final"),
                "final backup before delete",
                platform,
                cluster,
                progress,
                context.ledger,
                rolled_back=True,  # nothing is deleted before the backup is good
            )
            if isinstance(final, Continue):
                return final
        if not progress.done("workload"):
            cluster.delete(DEPLOYMENT, names.base)
            progress.complete("workload")
        waiting = self._gone("workload-gone", DEPLOYMENT, names.base, progress, cluster)
        if waiting is not None:
            return waiting
        if not progress.done("exposure"):
            for kind, name in (
                (INGRESS, names.base),
                (SERVICE, names.base),
                (NETWORK_POLICY, names.base),
            ):
                cluster.delete(kind, name)
            # Every Job of the instance (init, update, backup, restore): their pods would keep
            # the data volume from going.
            ours = f"app.kubernetes.io/instance={names.base}"
            for job in cluster.objects(JOB, selector=ours):
                cluster.delete(JOB, name_of(job))
            progress.complete("exposure")
        if not command.data.keep_data:
            if not progress.done("volume"):
                cluster.delete(PVC, names.volume)
                progress.complete("volume")
            # The PVC protection finalizer holds the claim until no pod uses it.
            waiting = self._gone("volume-gone", PVC, names.volume, progress, cluster)
            if waiting is not None:
                return waiting
            if not progress.done("database"):
                platform.databases.drop(names.role, names.database)
                progress.complete("database")
            if not progress.done("credentials"):
                cluster.delete(SECRET, names.secret)
                progress.complete("credentials")
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
