"""import: a new instance from a customer's Odoo database-manager backup in the import bucket.

    credentials, database, objects       (handlers/creation.py)
    access          the instance's own scoped key and the keyset, for its import Job
    copy            the archive copied, on the server, from the import bucket into the
                    instance's prefix (its Jobs may read nothing else)
    import-job      the import Job checks every member, then restores (jobs/importing.py)
    incoming-gone   the copied archive removed (the customer's upload stays where it was)
    deployment, rollout, health          (handlers/creation.py)

Admission has checked what the command itself can get wrong: its fields, the bucket, that the
archive exists. The archive's contents can be gigabytes, so the Job checks them, before it
restores anything: a refused archive is `command.failed` with code `archive_invalid` and the
member and reason in the message. A failed import removes everything it made (`undo-...`,
handlers/removal.py), rolled back; its record stays `error`, so the same import may be asked
again (after the customer uploads a good archive under the same key).
"""

from handlers.creation import made, making_steps, provisioned_fields, serving_steps
from handlers.declarations import Declaration, Queue
from handlers.jobs import grant_access, job, job_end, storage_call
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.removal import UNDO, removal_steps, run_or_undo
from handlers.results import Completed, HandlerContext, HandlerResult
from handlers.specs import instance_spec
from handlers.steps import Check, Step, StepOutcome
from k8s.data_jobs import build_import_job, job_name
from k8s.spec import InstanceSpec
from k8s.workload import Manifest, image_of
from messages.commands import ImportCommand
from messages.errors import PermanentError
from messages.events import ImportedEvent, ProvisionedData
from store.lifecycle import InstanceStatus, Transition
from store.settings import HOUR

ARCHIVE_NAME = "archive.zip"
ARCHIVE_INVALID = "archive_invalid"


class Import:
    """The import handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def _steps(
        self, command: ImportCommand, spec: InstanceSpec, cluster: Cluster, operation_id: str
    ) -> tuple[Step | Check, ...]:
        """The import, in the order of the module's docstring."""
        platform, namespace = self.platform, self.platform.namespace
        storage = platform.backups
        archive = storage.archive(command.data.archive.key)
        copied = storage.incoming(spec.instance_id, ARCHIVE_NAME)

        def access(_: Progress) -> StepOutcome:
            grant_access(spec, platform, cluster, rolled_back=True)
            return None

        def copy(_: Progress) -> StepOutcome:
            if (
                storage_call(f"{archive.uri}", lambda: storage.size(archive), rolled_back=True)
                is None
            ):
                raise PermanentError(
                    "archive_missing", f"{archive.uri} was removed after the import was accepted"
                )
            storage_call(
                f"copy of {archive.uri}", lambda: storage.copy(archive, copied), rolled_back=True
            )
            return None

        def manifest(_: Progress) -> Manifest:
            return build_import_job(
                spec,
                platform.tenants,
                storage.settings,
                platform.imports,
                namespace,
                name=job_name(spec, "import", operation_id),
                location=copied,
            )

        def imported(progress: Progress) -> None:
            end = job_end("import-job", progress.noted)
            if end.succeeded and end.report is not None and end.report.ok:
                return
            if end.report is not None and end.report.error_code == ARCHIVE_INVALID:
                raise PermanentError(
                    ARCHIVE_INVALID, f"{archive.uri} was refused: {end.report.error}"
                )
            raise PermanentError(
                "import_failed",
                f"import Job {namespace}/{end.name} failed ({end.failure()})",
            )

        def incoming_gone(_: Progress) -> StepOutcome:
            storage_call(
                f"removal of {copied.uri}", lambda: storage.remove([copied]), rolled_back=True
            )
            return None

        return (
            *making_steps(spec, platform, cluster),
            Step("access", access),
            Step("copy", copy),
            job("import-job", manifest, spec, platform, cluster),
            Check(imported),
            Step("incoming-gone", incoming_gone),
            *serving_steps(spec, platform, cluster),
        )

    def __call__(self, command: ImportCommand, context: HandlerContext) -> HandlerResult:
        """Run (or resume) the import's steps; undo them all once one fails for good."""
        platform = self.platform
        # Admission saw no instance the first time: it is the one this command just made.
        instance = context.admission.instance or context.ledger.instance(command.subject)
        if instance is None:
            raise RuntimeError("import begun without its instance")
        spec = instance_spec(instance)
        image_of(spec, platform.tenants)  # no image for the version: fail before any effect
        cluster = platform.cluster()
        progress = Progress(command, context, platform.faults, cluster)
        steps = self._steps(command, spec, cluster, progress.operation_id)
        incoming = [platform.backups.incoming(spec.instance_id, ARCHIVE_NAME)]
        undo = removal_steps(spec, platform, cluster, incoming=incoming, prefix=UNDO)
        waiting = run_or_undo(steps, undo, progress)
        if waiting is not None:
            return waiting
        progress.finish()
        data = ProvisionedData(**provisioned_fields(spec, platform))
        return Completed(ImportedEvent.caused_by(command, data), update=made(spec, platform))


S = InstanceStatus

# A failed import is rolled back and its record left `error`: the same import may run again.
IMPORT = Declaration(
    model=ImportCommand,
    queue=Queue.LONG,
    transition=Transition(
        frozenset({S.ERROR}),
        S.PROVISIONING,
        S.RUNNING,
        creates=True,
        deadline_seconds=4 * HOUR,
    ),
    event=ImportedEvent,
    # the import Job, then the server
    healthy_within=lambda waits: waits.data_job + waits.up,
    locks=True,
    handler=Import,
)
