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
from handlers.jobs import backup_steps
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.results import Completed, HandlerContext, HandlerResult
from handlers.specs import spec_of_instance
from handlers.steps import Step, StepOutcome, run_steps
from handlers.waiting import watch_step
from k8s.spec import InstanceSpec
from messages.commands import AnyCommand, DeleteCommand
from messages.errors import PermanentError
from messages.events import DeletedEvent, InstanceEventData
from store.ledger import Ledger


class Delete:
    """The delete handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def _gone(self, step: str, kind: str, name: str, cluster: Cluster) -> Step:
        """Wait (watching) until the object is gone, within the ready deadline."""
        namespace = self.platform.namespace
        deadline = self.platform.kubernetes.ready_deadline_seconds

        def wait(_: Progress, window: float, _until: float) -> None:
            cluster.wait_gone(kind, name, namespace, window)

        def expired() -> PermanentError:
            left = cluster.get(kind, name, namespace)
            finalizers = ", ".join(getattr(left.metadata, "finalizers", None) or []) if left else ""
            return PermanentError(
                "not_deleted",
                f"{kind} {namespace}/{name} still exists {deadline:g} s after its deletion "
                f"(finalizers: {finalizers or 'none'}); a pod that still uses it keeps it",
            )

        return watch_step(step, deadline, wait, expired)

    def _steps(
        self,
        command: DeleteCommand,
        spec: InstanceSpec,
        cluster: Cluster,
        ledger: Ledger,
        operation_id: str,
    ) -> tuple[Step, ...]:
        """The delete, in the order of the module's docstring."""
        platform, names, namespace = self.platform, spec.names, self.platform.namespace

        def workload(_: Progress) -> StepOutcome:
            cluster.delete("Deployment", names.base, namespace)
            return None

        def exposure(_: Progress) -> StepOutcome:
            for kind, name in (
                ("Ingress", names.base),
                ("Service", names.base),
                ("NetworkPolicy", names.base),
            ):
                cluster.delete(kind, name, namespace)
            # Every Job of the instance (init, update, backup, restore): their pods would keep
            # the data volume from going.
            ours = f"app.kubernetes.io/instance={names.base}"
            for job in cluster.list_labelled("Job", namespace, ours):
                cluster.delete("Job", job.metadata.name, namespace)
            return None

        def volume(_: Progress) -> StepOutcome:
            cluster.delete("PersistentVolumeClaim", names.volume, namespace)
            return None

        def database(_: Progress) -> StepOutcome:
            platform.databases.drop(names.role, names.database)
            return None

        def credentials(_: Progress) -> StepOutcome:
            cluster.delete("Secret", names.secret, namespace)
            return None

        final = backup_steps(
            "final",
            spec,
            safety_backup_id(operation_id, "final"),
            "final backup before delete",
            platform,
            cluster,
            ledger,
            rolled_back=True,  # nothing is deleted before the backup is good
        )
        data = (
            Step("volume", volume),
            # The PVC protection finalizer holds the claim until no pod uses it.
            self._gone("volume-gone", "PersistentVolumeClaim", names.volume, cluster),
            Step("database", database),
            Step("credentials", credentials),
        )
        return (
            *(final if command.data.final_backup else ()),
            Step("workload", workload),
            self._gone("workload-gone", "Deployment", names.base, cluster),
            Step("exposure", exposure),
            *(() if command.data.keep_data else data),
        )

    def __call__(self, command: AnyCommand, context: HandlerContext) -> HandlerResult:
        """Remove what the instance has, in an order that never strands a running pod."""
        if not isinstance(command, DeleteCommand):
            raise TypeError(f"delete cannot handle {command.type}")
        instance = context.admission.instance
        if instance is None:
            raise RuntimeError("delete admitted without its instance")
        spec, platform = spec_of_instance(instance), self.platform
        cluster = platform.cluster()
        progress = Progress(command, context, platform.faults, cluster)
        steps = self._steps(command, spec, cluster, context.ledger, progress.operation_id)
        waiting = run_steps(steps, progress)
        if waiting is not None:
            return waiting
        progress.finish()
        data = InstanceEventData(instance_id=spec.instance_id)
        return Completed(DeletedEvent.caused_by(command, data))
