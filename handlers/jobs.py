"""Running a Job as one step of an operation, and taking a backup as a few of them.

A backup: the instance's scoped object-storage key and the keyset where its Job reads them
(`-access`), the Job that streams the sealed archive to object storage (`-job`), and the record,
once the object storage itself shows the object with the size and checksum the Job reported
(`-record`).

A Job is applied once (a resumed operation finds it by its name), awaited until it finishes
(`Progress.wait`: parked, or watched),
and its end (success, the report in its termination message, the failure reason) is recorded
with the step: a redelivery after that never runs the Job again, and reads the end back. A data
Job whose database went away is run again by the Job controller itself (k8s/data_jobs.py), so
"finished" here is the end of its last attempt.
"""

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from handlers.platform import Cluster, Platform
from handlers.progress import Progress
from handlers.results import Continue, Wait
from handlers.steps import Noted, Step, StepOutcome
from handlers.waiting import selector_of
from handlers.waits import WaitingFor
from k8s.conditions import job_failure, job_outcome
from k8s.data_jobs import (
    ACCESS_KEY_ID,
    build_backup_access_secret,
    build_backup_job,
    build_keyset_secret,
    report_of,
)
from k8s.kinds import DEPLOYMENT, JOB, NETWORK_POLICY, POD, PVC, SECRET
from k8s.network import build_jobs_policy
from k8s.spec import InstanceSpec
from k8s.workload import Manifest
from messages.errors import PermanentError, RetryableError
from messages.job_reports import JobReport
from objectstore.client import StorageRefusedError, StorageUnavailableError, storage_errors
from store.ledger import Ledger
from store.records import BackupRecord
from store.retention import BackupKind

T = TypeVar("T")

OWNER_ANNOTATION = "odoo.saas/operation"
"""The operation a Job belongs to: a resumed operation takes over only its own Jobs."""


def _owner(job: Any) -> str | None:
    annotations = getattr(job.metadata, "annotations", None) or {}
    owner = annotations.get(OWNER_ANNOTATION)
    return str(owner) if owner is not None else None


@dataclass(frozen=True)
class JobEnd:
    """How a Job ended."""

    name: str
    succeeded: bool
    report: JobReport | None
    reason: str
    attempts: int = 1
    """Pods the Job ran (more than one: its database went away and it ran again)."""

    def failure(self) -> str:
        """What went wrong, in the report's words when it has some."""
        if self.report is not None and self.report.error:
            cause = f"{self.report.error_code}: {self.report.error}"
        else:
            cause = self.reason
        return cause if self.attempts <= 1 else f"{cause}; after {self.attempts} attempts"

    def to_note(self) -> dict[str, Any]:
        """As recorded in the operation."""
        report = self.report.model_dump(mode="json") if self.report is not None else None
        return {
            "name": self.name,
            "succeeded": self.succeeded,
            "report": report,
            "reason": self.reason,
            "attempts": self.attempts,
        }

    @classmethod
    def from_note(cls, note: dict[str, Any]) -> "JobEnd":
        """Back from the operation's record."""
        report = note.get("report")
        return cls(
            name=str(note["name"]),
            succeeded=bool(note["succeeded"]),
            report=JobReport.model_validate(report) if report is not None else None,
            reason=str(note.get("reason", "")),
            attempts=int(note.get("attempts", 1)),  # recorded before attempts were
        )


def job(
    step: str,
    manifest: Callable[[Progress], Manifest],
    spec: InstanceSpec,
    platform: Platform,
    cluster: Cluster,
) -> Step:
    """Apply the Job unless it exists, wait for its end; the step records it (`job_end`)."""

    def run(progress: Progress) -> StepOutcome:
        end = _run_job(step, manifest(progress), spec, platform, cluster, progress)
        return end if isinstance(end, Continue | Wait) else {_end_key(step): end.to_note()}

    return Step(step, run)


def job_end(step: str, noted: Noted) -> JobEnd:
    """How the Job of the recorded `step` ended."""
    return JobEnd.from_note(noted[_end_key(step)])


def _end_key(step: str) -> str:
    return f"{step}_job"


def finished(name: str) -> WaitingFor[Any]:
    """What a step waiting for the Job `name` to finish waits for."""
    return WaitingFor.state(JOB, name, _has_finished, f"Job {name} finished")


def _has_finished(job: Any) -> bool:
    return job_outcome(job) is not None


def _run_job(
    step: str,
    manifest: Manifest,
    spec: InstanceSpec,
    platform: Platform,
    cluster: Cluster,
    progress: Progress,
) -> Continue | Wait | JobEnd:
    name = manifest["metadata"]["name"]
    owner = progress.operation_id
    manifest["metadata"].setdefault("annotations", {})[OWNER_ANNOTATION] = owner
    job = cluster.get(JOB, name)
    if job is not None and _owner(job) != owner:
        # Left by another operation (a failed attempt with the same id): not ours to read.
        cluster.delete(JOB, name)
        gone = WaitingFor.gone(JOB, name, f"Job {name} of another operation gone")
        waiting = progress.wait(step, gone)
        if waiting is not None:
            return waiting
        job = None
    if job is None:
        # Its pods reach only what this policy allows (the namespace denies the rest); applied
        # here too, so an instance made before the policy existed gets it before its Job runs.
        cluster.apply(NETWORK_POLICY, build_jobs_policy(spec, platform.tenants, platform.namespace))
        job = cluster.apply(JOB, manifest)
    if job_outcome(job) is None:
        # The Job's activeDeadlineSeconds bounds this wait.
        waiting = progress.wait(step, finished(name))
        if waiting is not None:
            return waiting
        job = cluster.get(JOB, name)
        if job is None or job_outcome(job) is None:  # deleted, or recreated, meanwhile
            return progress.pause(step)
    succeeded = job_outcome(job) == "Complete"
    pods = cluster.objects(POD, selector=f"batch.kubernetes.io/job-name={name}")
    ran = [getattr(job.status, count, None) or 0 for count in ("succeeded", "failed")]
    reason = "" if succeeded else job_failure(job)
    return JobEnd(name, succeeded, report_of(pods), reason, max(sum(ran), 1))


def current_replicas(spec: InstanceSpec, platform: Platform, cluster: Cluster) -> int:
    """The Deployment's replicas now (0 when it does not exist)."""
    deployment = cluster.get(DEPLOYMENT, spec.names.base)
    if deployment is None or deployment.spec is None:
        return 0
    return int(deployment.spec.replicas or 0)


def _current_key(secret: Any) -> str | None:
    """The access key id an instance's backup-access Secret holds, if any."""
    data = getattr(secret, "data", None) or {}
    encoded = data.get(ACCESS_KEY_ID)
    return base64.b64decode(encoded).decode() if encoded else None


def storage_call(what: str, request: Callable[[], T], *, rolled_back: bool) -> T:
    """`request()` on object storage: away is a retry, a refusal a permanent failure."""
    try:
        with storage_errors(what):
            return request()
    except StorageUnavailableError as error:
        raise RetryableError(f"backup storage unavailable: {error}") from error
    except StorageRefusedError as error:
        raise PermanentError(
            "storage_refused",
            f"{error}; check the backup storage settings (INSTANCE_SERVICE_BACKUPS__*) and the "
            "service's own permissions there (deploy/README.md)",
            rolled_back=rolled_back,
        ) from error


def grant_access(
    spec: InstanceSpec, platform: Platform, cluster: Cluster, *, rolled_back: bool
) -> None:
    """What a data Job needs to reach object storage, in place: the keyset where it reads it (a
    rotated keyset reaches the next Job), and the instance's own scoped key, kept while the
    server still knows it, else a new one in the instance's backup-access Secret."""
    storage, namespace = platform.backups, platform.namespace
    cluster.apply(SECRET, build_keyset_secret(storage.settings, namespace, storage.keyset))
    current = _current_key(cluster.get(SECRET, spec.names.backup_access))
    granted = storage_call(
        f"access of instance {spec.instance_id}",
        lambda: storage.grant(spec.instance_id, current),
        rolled_back=rolled_back,
    )
    if granted is not None:
        secret = build_backup_access_secret(spec, namespace, granted.key_id, granted.secret)
        cluster.apply(SECRET, secret)


def backup_steps(
    prefix: str,
    spec: InstanceSpec,
    backup_id: str,
    label: str | None,
    platform: Platform,
    cluster: Cluster,
    ledger: Ledger,
    *,
    kind: BackupKind,
    rolled_back: bool,
) -> tuple[Step, ...]:
    """Back the instance up under `backup_id` and record it as a backup of `kind`; steps
    `<prefix>-...`."""
    namespace, names = platform.namespace, spec.names
    beside_key = f"{prefix}_beside_server"
    storage = platform.backups
    location = storage.location(spec.instance_id, backup_id)

    def access(progress: Progress) -> StepOutcome:
        missing = [
            f"{kind} {namespace}/{name}"
            for kind, name in ((PVC, names.volume), (SECRET, names.secret))
            if cluster.get(kind, name) is None
        ]
        if missing:  # its Job could never start: say so now, not after its deadline
            raise PermanentError(
                "backup_impossible",
                f"nothing to back up: {' and '.join(missing)} do not exist (an instance whose "
                "provision failed early has no data; a delete can skip the final backup with "
                "final_backup=false)",
                rolled_back=rolled_back,
            )
        grant_access(spec, platform, cluster, rolled_back=rolled_back)
        # Beside a server pod that is on a node: the data volume is ReadWriteOnce.
        pods = cluster.objects(POD, selector=selector_of(spec))
        beside = any(getattr(pod.spec, "node_name", None) for pod in pods)
        return {beside_key: beside}

    def manifest(progress: Progress) -> Manifest:
        return build_backup_job(
            spec,
            platform.tenants,
            storage.settings,
            namespace,
            backup_id,
            location,
            beside_server=bool(progress.noted.get(beside_key)),
        )

    def record(progress: Progress) -> StepOutcome:
        noted = progress.noted
        made = backup_made(
            prefix, spec, backup_id, label, platform, noted, kind=kind, rolled_back=rolled_back
        )
        stored = storage_call(
            f"backup {location.uri}", lambda: storage.describe(location), rolled_back=rolled_back
        )
        if stored is None or stored.size_bytes != made.size_bytes or stored.sha256 != made.sha256:
            found = "no object" if stored is None else f"{stored.size_bytes} bytes, {stored.sha256}"
            raise PermanentError(
                "backup_failed",
                f"the backup Job reported {made.size_bytes} bytes with SHA-256 {made.sha256} "
                f"at {location.uri}, the object storage holds {found}; no backup was recorded",
                rolled_back=rolled_back,
            )
        # Attempts the Job controller ran before this one (a database or storage outage) may
        # have left unfinished uploads: none of them is an object, but they take space.
        storage_call(
            f"unfinished uploads of {location.uri}",
            lambda: storage.abort_uploads(location.key),
            rolled_back=rolled_back,
        )
        ledger.add_backup(made)
        return None

    return (
        Step(f"{prefix}-access", access),
        job(f"{prefix}-job", manifest, spec, platform, cluster),
        Step(f"{prefix}-record", record),
    )


def backup_made(
    prefix: str,
    spec: InstanceSpec,
    backup_id: str,
    label: str | None,
    platform: Platform,
    noted: Noted,
    *,
    kind: BackupKind,
    rolled_back: bool,
) -> BackupRecord:
    """The backup the recorded `<prefix>-job` made, or a permanent failure if it made none."""
    namespace = platform.namespace
    end = job_end(f"{prefix}-job", noted)
    report = end.report
    expected = platform.backups.location(spec.instance_id, backup_id).uri
    if (
        not end.succeeded
        or report is None
        or not report.ok
        or report.sha256 is None
        or report.location != expected
    ):
        raise PermanentError(
            "backup_failed",
            f"backup Job {namespace}/{end.name} failed ({end.failure()}); no backup was "
            f"recorded. Its logs: kubectl logs -n {namespace} job/{end.name}",
            rolled_back=rolled_back,
        )
    return BackupRecord(
        id=backup_id,
        instance_id=spec.instance_id,
        location=expected,
        size_bytes=int(report.size_bytes or 0),
        sha256=report.sha256,
        label=label,
        odoo_version=spec.odoo_version,
        kind=kind,
    )
