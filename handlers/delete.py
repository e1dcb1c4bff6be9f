"""delete: the instance's objects, then (unless keep_data) its volume, database and Secret.

    workload     Deployment deleted, watched until gone
    exposure     Ingress, Service, NetworkPolicy and the init Job deleted
    volume       PVC deleted, watched until gone          (not with keep_data)
    database     tenant database and role dropped          (not with keep_data)
    credentials  Secret deleted                            (not with keep_data)

With keep_data the Secret stays too: the kept database is useless without its password.
The final backup the contract asks for by default needs backups (issue 7/10); until then a
delete with final_backup=true fails before touching anything, so nothing is lost.
"""

from handlers.platform import Platform
from handlers.progress import Progress
from handlers.results import Completed, HandlerContext, HandlerResult
from handlers.specs import spec_of_instance
from k8s.apply import WaitTimeoutError
from messages.commands import AnyCommand, DeleteCommand
from messages.errors import PermanentError
from messages.events import DeletedEvent, InstanceEventData


class Delete:
    """The delete handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def __call__(self, command: AnyCommand, context: HandlerContext) -> HandlerResult:
        """Remove what the instance has, in an order that never strands a running pod."""
        if not isinstance(command, DeleteCommand):
            raise TypeError(f"delete cannot handle {command.type}")
        instance = context.admission.instance
        if instance is None:
            raise RuntimeError("delete admitted without its instance")
        if command.data.final_backup:
            raise PermanentError(
                "final_backup_unavailable",
                "this service version cannot take the final backup yet; nothing was deleted. "
                "Send the delete with final_backup=false to delete without one",
                rolled_back=True,
            )
        spec, platform = spec_of_instance(instance), self.platform
        names, namespace = spec.names, platform.namespace
        cluster = platform.cluster()
        progress = Progress(command, context, platform.faults, cluster)
        if not progress.done("workload"):
            cluster.delete("Deployment", names.base, namespace)
            try:
                cluster.wait_gone("Deployment", names.base, namespace, progress.window(1e18))
            except WaitTimeoutError:
                return progress.pause("workload")
            progress.complete("workload")
        if not progress.done("exposure"):
            for kind, name in (
                ("Ingress", names.base),
                ("Service", names.base),
                ("NetworkPolicy", names.base),
                ("Job", names.init_job),
            ):
                cluster.delete(kind, name, namespace)
            progress.complete("exposure")
        if not command.data.keep_data:
            if not progress.done("volume"):
                cluster.delete("PersistentVolumeClaim", names.volume, namespace)
                try:
                    # Its pods must be gone first (the PVC protection finalizer waits for them).
                    cluster.wait_gone(
                        "PersistentVolumeClaim", names.volume, namespace, progress.window(1e18)
                    )
                except WaitTimeoutError:
                    return progress.pause("volume")
                progress.complete("volume")
            if not progress.done("database"):
                platform.databases.drop(names.role, names.database)
                progress.complete("database")
            if not progress.done("credentials"):
                cluster.delete("Secret", names.secret, namespace)
                progress.complete("credentials")
        progress.finish()
        data = InstanceEventData(instance_id=spec.instance_id)
        return Completed(DeletedEvent.caused_by(command, data))
