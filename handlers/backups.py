"""backup and restore: the service's own Jobs move the data; the store records good backups.

    backup   backup-access, backup-job, backup-record, prune (the retention policy, in the
             store), prune-objects (their objects removed)
    restore  safety-* (a backup first, when the instance runs), access, stop, stopped,
             restore-job, start, started, health (when it ran before)

A backup runs beside the serving instance: pg_dump reads one consistent snapshot of the
database, and Odoo's filestore only ever gains files named by their content, so a copy taken
while Odoo runs holds every file the dump refers to (files added after the dump began are
extra, never missing). A restore stops the instance first: its database is replaced in one
transaction and its filestore swapped while nothing writes to them. A restore whose archive
fails its checksum changes nothing and starts the instance again.

Admission has refused a backup id already used and a restore of a backup this instance does not
have, or of another Odoo version's data, before anything began (store/admission.py).
"""

import uuid
from datetime import UTC, datetime

from handlers.declarations import Declaration, Queue
from handlers.jobs import (
    backup_made,
    backup_steps,
    current_replicas,
    grant_access,
    job,
    job_end,
    storage_call,
)
from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.results import Completed, HandlerContext, HandlerResult
from handlers.specs import instance_spec
from handlers.steps import Check, Step, StepOutcome, run_steps
from handlers.waiting import health, rollout
from k8s.data_jobs import build_restore_job, job_name
from k8s.spec import InstanceSpec
from k8s.workload import Manifest
from messages.commands import BackupCommand, BackupPlan, RestoreCommand
from messages.errors import PermanentError
from messages.events import (
    BackedUpData,
    BackedUpEvent,
    BackupsPrunedData,
    BackupsPrunedEvent,
    ObjectLocationData,
    RestoredData,
    RestoredEvent,
)
from objectstore.locations import ObjectLocation
from store.ledger import Ledger
from store.lifecycle import InstanceStatus, Transition
from store.records import BackupRecord
from store.retention import BackupKind, RetentionTimes, Taken, to_prune
from store.settings import HOUR

UNTOUCHED = frozenset({"checksum_mismatch", "backup_missing", "backup_invalid"})
"""Restore failures found before anything was changed."""


SCHEDULER_SOURCE = "/instance-service/backup-scheduler"
"""The `source` of the backup commands the service's own schedule publishes
(`instance-service backups schedule`): their backups are `scheduled`, pruned by the plan."""


class Backup:
    """The backup handler: the backup, then the retention policy applied to the instance."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def _prune(self, spec: InstanceSpec, plan: BackupPlan, ledger: Ledger) -> tuple[Step, ...]:
        """Mark what the retention policy lets go (the store first: a backup it no longer
        offers is never restored from a missing object), then remove the objects."""
        platform = self.platform

        def prune(_: Progress) -> StepOutcome:
            backups = ledger.backups(spec.instance_id)
            taken = [Taken(b.id, b.kind, b.taken_at) for b in backups if b.taken_at is not None]
            times = RetentionTimes(
                platform.retention.manual_keep_days, platform.retention.final_backup_days
            )
            ids = to_prune(taken, plan, times, datetime.now(UTC))
            ledger.prune_backups(spec.instance_id, ids)
            locations = [b.location for b in backups if b.id in set(ids)]
            return {PRUNED: ids, PRUNED_LOCATIONS: locations}

        def objects(progress: Progress) -> StepOutcome:
            locations = [ObjectLocation.parse(uri) for uri in progress.noted[PRUNED_LOCATIONS]]
            found = [location for location in locations if location is not None]
            storage_call(
                f"removal of {len(found)} pruned backups",
                lambda: platform.backups.remove(found),
                rolled_back=False,
            )
            return None

        return (Step("prune", prune), Step("prune-objects", objects))

    def __call__(self, command: BackupCommand, context: HandlerContext) -> HandlerResult:
        """Run the backup Job, record the backup it made, prune by the instance's plan."""
        instance = context.admission.instance
        if instance is None:
            raise RuntimeError("backup admitted without its instance")
        spec = instance_spec(instance)
        cluster = self.platform.cluster()
        progress = Progress(command, context, self.platform.faults, cluster)
        backup_id = command.data.backup_id
        scheduled = command.source == SCHEDULER_SOURCE
        kind = BackupKind.SCHEDULED if scheduled else BackupKind.MANUAL
        steps = backup_steps(
            "backup",
            spec,
            backup_id,
            command.data.label,
            self.platform,
            cluster,
            context.ledger,
            kind=kind,
            rolled_back=True,  # a failed backup leaves the instance as it was
        )
        plan = instance.backup_plan or BackupPlan()
        waiting = run_steps((*steps, *self._prune(spec, plan, context.ledger)), progress)
        if waiting is not None:
            return waiting
        made = backup_made(
            "backup",
            spec,
            backup_id,
            command.data.label,
            self.platform,
            progress.noted,
            kind=kind,
            rolled_back=True,
        )
        progress.finish()
        location = ObjectLocation.parse(made.location)
        if location is None:
            raise RuntimeError(f"a backup recorded at {made.location}, not in object storage")
        data = BackedUpData(
            instance_id=spec.instance_id,
            backup_id=backup_id,
            size_bytes=made.size_bytes,
            sha256=made.sha256,
            scheduled=scheduled,
            location=ObjectLocationData(bucket=location.bucket, key=location.key),
        )
        pruned = list(progress.noted[PRUNED])
        more = (
            (
                BackupsPrunedEvent.caused_by(
                    command, BackupsPrunedData(instance_id=spec.instance_id, backup_ids=pruned)
                ),
            )
            if pruned
            else ()
        )
        return Completed(BackedUpEvent.caused_by(command, data), more_events=more)


PRUNED = "pruned"
PRUNED_LOCATIONS = "pruned_locations"
"""What the `prune` step recorded: the ids it marked, and where their objects are."""


def safety_backup_id(operation_id: str, purpose: str) -> str:
    """The id of a backup an operation takes for itself: the same on every re-run."""
    return str(uuid.uuid5(uuid.UUID(operation_id), purpose))


def known_backup(
    ledger: Ledger, backup_id: str, instance_id: str, odoo_version: str
) -> BackupRecord:
    """A recorded backup of this instance and of the Odoo version it runs, or a permanent
    failure that touched nothing (for a restore command, admission refused those already; an
    upgrade's way back finds its own pre-upgrade backup here)."""
    backup = ledger.backup(backup_id)
    if backup is None or backup.instance_id != instance_id:
        raise PermanentError(
            "unknown_backup",
            f"no completed backup {backup_id} of instance {instance_id} is recorded",
            rolled_back=True,
        )
    if backup.odoo_version is not None and backup.odoo_version != odoo_version:
        raise PermanentError(
            "backup_version_mismatch",
            f"backup {backup_id} holds the data of Odoo {backup.odoo_version}; the instance "
            f"runs Odoo {odoo_version}, which cannot open it. Nothing was restored",
            rolled_back=True,
        )
    return backup


class Restore:
    """The restore handler."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def _steps(
        self,
        spec: InstanceSpec,
        backup: BackupRecord,
        replicas: int,
        cluster: Cluster,
        ledger: Ledger,
        operation_id: str,
    ) -> tuple[Step | Check, ...]:
        """The restore, in the order of the module's docstring."""
        platform, namespace = self.platform, self.platform.namespace

        def stop(_: Progress) -> StepOutcome:
            cluster.scale(spec.names.base, 0, absent_ok=True)
            return None

        def access(_: Progress) -> StepOutcome:
            grant_access(spec, platform, cluster, rolled_back=True)
            return None

        def manifest(_: Progress) -> Manifest:
            return build_restore_job(
                spec,
                platform.tenants,
                platform.backups.settings,
                namespace,
                name=job_name(spec, "restore", operation_id),
                location=backup.location,
                sha256=backup.sha256,
            )

        def restored(progress: Progress) -> None:
            end = job_end("restore-job", progress.noted)
            if end.succeeded and end.report is not None and end.report.ok:
                return
            untouched = end.report is not None and end.report.error_code in UNTOUCHED
            if untouched and replicas > 0:
                cluster.scale(spec.names.base, replicas, absent_ok=True)
            raise PermanentError(
                "restore_failed",
                f"restore Job {namespace}/{end.name} failed ({end.failure()}); "
                + (
                    "nothing was changed and the instance was started again"
                    if untouched
                    else f"the instance is stopped; its logs: kubectl logs -n {namespace} "
                    f"job/{end.name}"
                ),
                rolled_back=untouched,
            )

        def start(_: Progress) -> StepOutcome:
            cluster.scale(spec.names.base, replicas, absent_ok=True)
            return None

        safety = backup_steps(
            "safety",
            spec,
            safety_backup_id(operation_id, "safety"),
            f"before restoring {backup.id}",
            platform,
            cluster,
            ledger,
            kind=BackupKind.SAFETY,
            rolled_back=True,
        )
        started = (
            Step("start", start),
            rollout("started", replicas, spec, platform, cluster),
            health("health", spec, platform),
        )
        # A backup first, and the start again, only of an instance that ran.
        return (
            *(safety if replicas > 0 else ()),
            Step("access", access),
            Step("stop", stop),
            rollout("stopped", 0, spec, platform, cluster),
            job("restore-job", manifest, spec, platform, cluster),
            Check(restored),
            *(started if replicas > 0 else ()),
        )

    def __call__(self, command: RestoreCommand, context: HandlerContext) -> HandlerResult:
        """Safety backup, stop, restore, start again."""
        instance = context.admission.instance
        if instance is None or context.operation_id is None:
            raise RuntimeError("restore admitted without its instance")
        platform = self.platform
        spec = instance_spec(instance)
        backup = known_backup(
            context.ledger, command.data.backup_id, spec.instance_id, spec.odoo_version
        )
        cluster = platform.cluster()
        progress = Progress(command, context, platform.faults, cluster)
        if "replicas_before" not in progress.noted:
            progress.note(replicas_before=current_replicas(spec, platform, cluster))
        replicas = int(progress.noted["replicas_before"])
        steps = self._steps(spec, backup, replicas, cluster, context.ledger, progress.operation_id)
        waiting = run_steps(steps, progress)
        if waiting is not None:
            return waiting
        progress.finish()
        data = RestoredData(instance_id=spec.instance_id, backup_id=backup.id)
        return Completed(RestoredEvent.caused_by(command, data))


S = InstanceStatus

BACKUP = Declaration(
    model=BackupCommand,
    queue=Queue.LONG,
    transition=Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.SUSPENDED, S.TERMINATED}),
        S.BACKING_UP,
        None,
        deadline_seconds=3 * HOUR,
    ),
    event=BackedUpEvent,
    # the backup volume, the backup Job
    healthy_within=lambda waits: waits.data_job,
    locks=True,
    handler=Backup,
)


RESTORE = Declaration(
    model=RestoreCommand,
    queue=Queue.LONG,
    transition=Transition(
        frozenset({S.RUNNING, S.DEGRADED, S.STOPPED, S.ERROR}),
        S.RESTORING,
        None,
        deadline_seconds=6 * HOUR,
    ),
    event=RestoredEvent,
    # a safety backup, down, the restore Job, up again
    healthy_within=lambda waits: waits.data_job + waits.down + waits.data_job + waits.up,
    locks=True,
    handler=Restore,
)
