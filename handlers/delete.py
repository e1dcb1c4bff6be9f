"""delete: the instance's objects, then (unless keep_data) its volume, database and Secret.

    final-*      (unless final_backup is false) a backup, recorded; kept after the delete
    workload, workload-gone, exposure, access, and unless keep_data volume, volume-gone,
    database, credentials: handlers/removal.py

With keep_data the Secret stays too: the kept database is useless without its password.
The final backup stays in object storage and in the `backups` table (label "final backup before
delete") for `final_backup_days`; if it fails, nothing is deleted. With its Jobs gone, nothing
needs the instance's scoped key: the service's own key reads and prunes its backups.
"""

from handlers.backups import safety_backup_id
from handlers.declarations import Declaration, Queue
from handlers.jobs import backup_steps
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.removal import removal_steps
from handlers.results import Completed, HandlerContext, HandlerResult
from handlers.specs import instance_spec
from handlers.steps import Step, run_steps
from k8s.spec import InstanceSpec
from messages.commands import DeleteCommand
from messages.events import DeletedEvent, InstanceEventData
from store.ledger import Ledger
from store.lifecycle import InstanceStatus, Transition
from store.retention import BackupKind
from store.settings import HOUR


class Delete:
    """The delete handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def _steps(
        self,
        command: DeleteCommand,
        spec: InstanceSpec,
        cluster: Cluster,
        ledger: Ledger,
        operation_id: str,
    ) -> tuple[Step, ...]:
        """The delete, in the order of the module's docstring."""
        platform = self.platform
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
        return (
            *(final if command.data.final_backup else ()),
            *removal_steps(spec, platform, cluster, keep_data=command.data.keep_data),
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
