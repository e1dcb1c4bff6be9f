"""clone: a new, independent instance from a backup of another, neutralized unless told not to.

    source-backup   (no backup_id given) a backup of the source, as a backup command of its own
    credentials, database, objects       (handlers/creation.py; a neutralized copy's network
                                          policy has no mail egress)
    access          the copy's own scoped key and the keyset, for its restore Job
    copy            the source's backup copied, on the server, into the copy's prefix
    restore-job     the copy's restore Job: checksum, database and filestore, and the
                    neutralization in the restore's transaction (jobs/neutralize.py)
    incoming-gone   the copied object removed
    deployment, rollout, health          (handlers/creation.py)

The fresh backup is a real `backup` command of the source, sent by the service through its
outbox (id and backup id derived from this operation, `source` /instance-service/clone): the
source's own lock, hold and order rules decide when it runs (a suspend that arrives meanwhile
waits behind it and then applies; one applied first makes it `not_allowed_in_state`), it is
answered on the bus like any other, and the source keeps serving. The clone waits for its
answer: by watching the source's backup Job once it exists, by looking again every few seconds
before (while the command waits in its queue or behind the source's lock).

A clone made from a backup id admission found belongs to the source; the backup's object is
copied into the new instance's own prefix because its Jobs may read nothing else; sealed under
the source's key, the copy is opened with that key as associated data. A clone that fails for
good (the source's backup refused or failed, the source gone meanwhile, a restore that fails)
removes everything it made (`undo-...`, handlers/removal.py) and is answered `command.failed`,
rolled back; its record stays `error`, so the same clone may be asked again.
"""

from typing import Any

from handlers.backups import UNTOUCHED, safety_backup_id
from handlers.creation import made, making_steps, provisioned_fields, serving_steps
from handlers.declarations import Declaration, Queue
from handlers.jobs import finished, grant_access, job, job_end, storage_call
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.removal import UNDO, removal_steps, run_or_undo
from handlers.results import Completed, Continue, HandlerContext, HandlerResult
from handlers.specs import instance_spec
from handlers.steps import Check, Step, StepOutcome
from k8s.conditions import job_outcome
from k8s.data_jobs import build_restore_job, job_name
from k8s.kinds import JOB
from k8s.spec import InstanceSpec
from k8s.workload import Manifest, image_of
from messages.commands import CloneCommand
from messages.errors import PermanentError
from messages.events import ClonedData, ClonedEvent
from messages.publishing import build_command
from objectstore.locations import ObjectLocation
from store.ledger import Ledger
from store.lifecycle import InstanceStatus, Transition
from store.records import InstanceRecord, Outcome
from store.settings import HOUR

CLONE_SOURCE = "/instance-service/clone"
"""The `source` of the backup commands a clone sends for its source."""
BACKUP_TYPE = "odoo.instance.backup.v1"
SOURCE_BACKUP_POLL_SECONDS = 5.0
"""How often a clone looks for its source's backup before that backup's Job exists."""
BACKUP_KEY = "clone_backup_id"
COPY_KEY = "clone_copy"
"""What the steps noted: the backup the copy is made from, and where its copy went."""


def source_backup_ids(operation_id: str) -> tuple[str, str]:
    """The command id and backup id of the source's backup a clone operation sends: the same on
    every run of it."""
    return (
        safety_backup_id(operation_id, "clone-source-command"),
        safety_backup_id(operation_id, "clone-source"),
    )


class Clone:
    """The clone handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def _source_backup(
        self,
        command: CloneCommand,
        source: InstanceSpec,
        cluster: Cluster,
        ledger: Ledger,
        operation_id: str,
    ) -> Step:
        command_id, backup_id = source_backup_ids(operation_id)
        job_of_backup = job_name(source, "backup", backup_id)

        def run(progress: Progress) -> StepOutcome:
            data = {
                "instance_id": source.instance_id,
                "backup_id": backup_id,
                "label": f"for clone {command.subject}",
            }
            ledger.send(
                build_command(
                    BACKUP_TYPE,
                    data,
                    source=CLONE_SOURCE,
                    command_id=command_id,
                    correlationid=command.correlationid or command.id,
                )
            )
            outcome = ledger.outcome_of(command_id)
            if outcome is None:
                found = cluster.get(JOB, job_of_backup)
                if found is not None and job_outcome(found) is None:
                    waiting = progress.wait("source-backup", finished(job_of_backup))
                    if waiting is not None:
                        return waiting
                return Continue(
                    step=f"waiting: backup {backup_id} of source {source.instance_id}",
                    after_seconds=SOURCE_BACKUP_POLL_SECONDS if found is None else 1.0,
                )
            if outcome.outcome is Outcome.SUCCEEDED:
                return {BACKUP_KEY: backup_id}
            error = _error_of(ledger.answer(command_id))
            raise PermanentError(
                "source_backup_failed",
                f"the backup of source {source.instance_id} (command {command_id}) was "
                f"{outcome.outcome.value}: {error.get('code', '?')}: "
                f"{error.get('message', 'see its answer on the bus')}",
            )

        return Step("source-backup", run)

    def _steps(
        self,
        command: CloneCommand,
        spec: InstanceSpec,
        source: InstanceSpec,
        cluster: Cluster,
        ledger: Ledger,
        operation_id: str,
    ) -> tuple[Step | Check, ...]:
        """The clone, in the order of the module's docstring."""
        platform, namespace = self.platform, self.platform.namespace

        def access(_: Progress) -> StepOutcome:
            grant_access(spec, platform, cluster, rolled_back=True)
            return None

        def copy(progress: Progress) -> StepOutcome:
            backup_id = str(progress.noted.get(BACKUP_KEY) or command.data.backup_id)
            backup = ledger.backup(backup_id)
            if backup is None or backup.instance_id != source.instance_id:
                raise PermanentError(
                    "backup_missing",
                    f"backup {backup_id} of instance {source.instance_id} is no longer "
                    "recorded (pruned meanwhile?)",
                )
            original = ObjectLocation.parse(backup.location)
            if original is None:
                raise PermanentError(
                    "backup_not_in_object_storage",
                    f"backup {backup_id} was written to the backup volume before backups went "
                    "to object storage: a clone needs one in object storage (take a new backup)",
                )
            target = platform.backups.incoming(spec.instance_id, backup_id)
            storage_call(
                f"copy of backup {backup_id}",
                lambda: platform.backups.copy(original, target),
                rolled_back=True,
            )
            copied = {"location": target.uri, "sealed_as": original.key, "sha256": backup.sha256}
            return {BACKUP_KEY: backup_id, COPY_KEY: copied}

        def manifest(progress: Progress) -> Manifest:
            copied = progress.noted[COPY_KEY]
            return build_restore_job(
                spec,
                platform.tenants,
                platform.backups.settings,
                namespace,
                name=job_name(spec, "restore", operation_id),
                location=copied["location"],
                sha256=copied["sha256"],
                sealed_as=copied["sealed_as"],
                neutralize=command.data.neutralize,
            )

        def restored(progress: Progress) -> None:
            end = job_end("restore-job", progress.noted)
            if end.succeeded and end.report is not None and end.report.ok:
                return
            untouched = end.report is not None and end.report.error_code in UNTOUCHED
            raise PermanentError(
                "backup_invalid" if untouched else "restore_failed",
                f"the copy's restore Job {namespace}/{end.name} failed ({end.failure()})",
            )

        def incoming_gone(progress: Progress) -> StepOutcome:
            location = ObjectLocation.parse(progress.noted[COPY_KEY]["location"])
            if location is not None:
                storage_call(
                    f"removal of {location.uri}",
                    lambda: platform.backups.remove([location]),
                    rolled_back=True,
                )
            return None

        fresh = (
            ()
            if command.data.backup_id is not None
            else (self._source_backup(command, source, cluster, ledger, operation_id),)
        )
        return (
            *fresh,
            *making_steps(spec, platform, cluster),
            Step("access", access),
            Step("copy", copy),
            job("restore-job", manifest, spec, platform, cluster),
            Check(restored),
            Step("incoming-gone", incoming_gone),
            *serving_steps(spec, platform, cluster),
        )

    def __call__(self, command: CloneCommand, context: HandlerContext) -> HandlerResult:
        """Run (or resume) the clone's steps; undo them all once one fails for good."""
        platform, ledger = self.platform, context.ledger
        # Admission saw no instance the first time: it is the one this command just made.
        instance = context.admission.instance or ledger.instance(command.subject)
        if instance is None:
            raise RuntimeError("clone begun without its instance")
        spec = instance_spec(instance)
        image_of(spec, platform.tenants)  # no image for the version: fail before any effect
        source = _source(ledger, command)
        cluster = platform.cluster()
        progress = Progress(command, context, platform.faults, cluster)
        steps = self._steps(command, spec, source, cluster, ledger, progress.operation_id)
        incoming = [
            platform.backups.incoming(spec.instance_id, str(backup_id))
            for backup_id in {progress.noted.get(BACKUP_KEY), command.data.backup_id}
            if backup_id is not None
        ]
        undo = removal_steps(spec, platform, cluster, incoming=incoming, prefix=UNDO)
        waiting = run_or_undo(steps, undo, progress)
        if waiting is not None:
            return waiting
        progress.finish()
        data = ClonedData(
            **provisioned_fields(spec, platform),
            source_instance_id=source.instance_id,
            backup_id=str(progress.noted[BACKUP_KEY]),
            neutralized=command.data.neutralize,
        )
        return Completed(ClonedEvent.caused_by(command, data), update=made(spec, platform))


def _error_of(answer: dict[str, Any] | None) -> dict[str, Any]:
    """The `error` of a failed or rejected command's answer (empty if it has none)."""
    data = (answer or {}).get("data")
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def _source(ledger: Ledger, command: CloneCommand) -> InstanceSpec:
    """The source as recorded (deleted since admission: still recorded, so its names are
    known; its backup then fails, or its copy finds the backup kept after the delete)."""
    record: InstanceRecord | None = ledger.instance(command.data.source_instance_id)
    if record is None:
        raise PermanentError(
            "source_missing", f"source instance {command.data.source_instance_id} is not recorded"
        )
    return instance_spec(record)


S = InstanceStatus

# A failed clone is rolled back and its record left `error`: the same clone may run again.
CLONE = Declaration(
    model=CloneCommand,
    queue=Queue.LONG,
    transition=Transition(
        frozenset({S.ERROR}),
        S.PROVISIONING,
        S.RUNNING,
        creates=True,
        deadline_seconds=8 * HOUR,
    ),
    event=ClonedEvent,
    # the source's backup Job, the copy's restore Job, then the server
    healthy_within=lambda waits: 2 * waits.data_job + waits.up,
    locks=True,
    handler=Clone,
)
