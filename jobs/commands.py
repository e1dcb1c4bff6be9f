"""`instance-service job backup|restore|import`: run one job and report it the Kubernetes way.

The report (messages/job_reports.py) goes to the container's termination message file, where
the kubelet picks it up for the pod's status; a summary goes to stdout for `kubectl logs`.
Exit status 0 on success, 75 when the database or the object storage went away (the Job's pod
failure policy runs it again), 1 on any other failure the report explains (the Job fails at
once).
"""

import sys
from pathlib import Path
from typing import Literal

from jobs.archive import JobError, restore
from jobs.importing import Limits
from jobs.neutralize import NEUTRALIZE_SQL
from messages.job_reports import EXIT_FAILED, EXIT_OK, EXIT_RETRY, JobReport

DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")


def _report(report: JobReport, termination_log: Path, status: int) -> int:
    try:
        termination_log.write_bytes(report.encode())
    except OSError as error:
        print(f"cannot write the termination message {termination_log}: {error}", file=sys.stderr)
    print(report.model_dump_json(exclude_none=True))
    return status


Kind = Literal["backup", "restore", "import"]


def _failed(kind: Kind, error: Exception, termination_log: Path) -> int:
    retry = isinstance(error, JobError) and error.retry
    if isinstance(error, JobError):
        code = error.code
    elif isinstance(error, OSError):
        code = "io_error"  # a full or broken volume: another attempt would meet the same
    else:
        code = "internal_error"
    message = str(error) or type(error).__name__
    report = JobReport(kind=kind, ok=False, error_code=code, error=message[:2000])
    return _report(report, termination_log, EXIT_RETRY if retry else EXIT_FAILED)


def run_backup(
    database: str,
    filestore: Path,
    target_uri: str,
    part_size_mib: int,
    termination_log: Path,
    data_dir: Path | None,
) -> int:
    """Back up one tenant to the object `target_uri` (s3://bucket/key)."""
    from jobs.offsite import ObjectTarget, backup_to_object  # only Jobs need boto3 and tink

    try:
        target = ObjectTarget.from_environment(target_uri, part_size_mib)
        made = backup_to_object(database, filestore, target, data_dir)
    except Exception as error:  # noqa: BLE001 - a Job always reports, whatever broke
        return _failed("backup", error, termination_log)
    done = JobReport(
        kind="backup",
        ok=True,
        location=made.location.uri,
        size_bytes=made.size_bytes,
        sha256=made.sha256,
    )
    return _report(done, termination_log, EXIT_OK)


def run_restore(
    source: str,
    sha256: str,
    database: str,
    filestore: Path,
    termination_log: Path,
    data_dir: Path | None,
    *,
    sealed_as: str | None = None,
    neutralize: bool = False,
) -> int:
    """Restore one tenant from `source` (an s3:// object, or an archive on the backup volume
    written before backups went to object storage), which must have checksum `sha256`; a
    clone's copy of its source's backup was sealed as `sealed_as`, and is `neutralize`d."""
    from jobs.offsite import ObjectTarget, restore_from_object  # only Jobs need boto3 and tink

    finish = NEUTRALIZE_SQL if neutralize else ""
    try:
        if source.startswith("s3://"):
            target = ObjectTarget.from_environment(source, part_size_mib=16)
            restore_from_object(
                target, sha256, database, filestore, data_dir, sealed_as=sealed_as, finish=finish
            )
        elif sealed_as is not None or neutralize:
            raise JobError("bad_arguments", "a clone's restore reads an s3:// object")
        else:
            restore(Path(source), sha256, database, filestore, data_dir)
    except Exception as error:  # noqa: BLE001 - a Job always reports, whatever broke
        return _failed("restore", error, termination_log)
    done = JobReport(kind="restore", ok=True, location=source, sha256=sha256)
    return _report(done, termination_log, EXIT_OK)


def run_import(
    source: str,
    odoo_version: str,
    limits: Limits,
    database: str,
    filestore: Path,
    termination_log: Path,
    data_dir: Path | None,
) -> int:
    """Import a customer's database-manager archive (the s3:// object `source`) into one
    tenant, after checking every member of it."""
    from jobs.offsite import ObjectTarget, import_from_object  # only Jobs need boto3 and tink

    try:
        target = ObjectTarget.from_environment(source, part_size_mib=16)
        import_from_object(target, odoo_version, limits, database, filestore, data_dir)
    except Exception as error:  # noqa: BLE001 - a Job always reports, whatever broke
        return _failed("import", error, termination_log)
    done = JobReport(kind="import", ok=True, location=source)
    return _report(done, termination_log, EXIT_OK)
