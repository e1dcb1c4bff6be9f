"""Pure builders of the Jobs that move an instance's data, and reading what they report.

Backup and restore Jobs run this service's own image (`instance-service job backup|restore`,
jobs/) as the Odoo image's user, with the tenant's data volume mounted, libpq's PG* variables
pointing at the tenant database (the password from the instance's Secret), and the way to object
storage: its endpoint, the instance's own scoped key (from its `-backup-access` Secret) and the
keyset that seals archives (from the namespace's keyset Secret). Each reports through its
container's termination message (messages/job_reports.py).

A restore of an archive written to the backup volume before backups went to object storage
mounts the tenant's own area of that volume instead (`subPath`: the directory of its instance,
at the same path it has on the volume, so a Job sees no other tenant's archives).

A Job whose database or object storage went away mid-run (a restart, a failover) exits
`EXIT_RETRY`, and one killed mid-run (out of memory, `kill -9`) ends with `EXIT_KILLED`: the Job
controller runs it again, a bounded number of times, with its own backoff; any other failure
fails the Job at once (its pod failure policy). So the retry is the cluster's: it needs no
handler, survives the consumer's restarts and scaling to zero, keeps one Job per backup, and a
redelivered command waits for the same Job rather than starting an attempt of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from k8s.settings import MIB, ImportSettings, TenantSettings
from k8s.spec import MANAGED_BY, InstanceSpec
from k8s.workload import (
    _CONTAINER_SECURITY,
    DATA_PATH,
    SCRATCH_MOUNT,
    SCRATCH_VOLUME,
    Manifest,
    _pod_security,
    image_of,
    instance_metadata,
)
from messages.job_reports import EXIT_KILLED, EXIT_RETRY, JobReport
from objectstore.locations import ObjectLocation
from objectstore.settings import ObjectStorageSettings

if TYPE_CHECKING:
    from kubernetes.client import V1Pod

BACKUP_PATH = "/backups"
TERMINATION_LOG = "/dev/termination-log"
FINISHED_JOB_TTL_SECONDS = 86400
SERVICE_NAME = "instance-service"
"""`app.kubernetes.io/name` of the service's own Job pods (the local stack runs them for real)."""
RETRIES_AFTER_OUTAGE = 4
"""Attempts after the first when the database went away. The Job controller waits 10 s before
the second and doubles the wait each time, so a database may be gone about 150 s (a restart, a
failover) before the Job fails; the Job's deadline bounds the whole."""


def backup_area(spec: InstanceSpec) -> str:
    """The instance's own directory of the backup volume, as its Jobs see it (and nothing else)."""
    return f"{BACKUP_PATH}/{spec.names.key}"


KEYSET_KEY = "keyset.json"
ACCESS_KEY_ID = "access-key-id"
SECRET_ACCESS_KEY = "secret-access-key"  # noqa: S105 - a key name, not a secret
"""Keys of the keyset Secret and of an instance's backup-access Secret."""


def build_backup_access_secret(
    spec: InstanceSpec, namespace: str, access_key_id: str, secret_access_key: str
) -> Manifest:
    """The instance's own object-storage key, for its data Jobs only."""
    names = spec.names
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": instance_metadata(
            spec, names.backup_access, namespace, spec.labels("backup-access")
        ),
        "type": "Opaque",
        "stringData": {ACCESS_KEY_ID: access_key_id, SECRET_ACCESS_KEY: secret_access_key},
    }


def build_keyset_secret(storage: ObjectStorageSettings, namespace: str, keyset: str) -> Manifest:
    """The keyset that seals backups, where the namespace's data Jobs read it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": storage.keyset_secret,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": SERVICE_NAME,
                "app.kubernetes.io/component": "backup-keyset",
                "app.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
        "type": "Opaque",
        "stringData": {KEYSET_KEY: keyset},
    }


def _storage_env(spec: InstanceSpec, storage: ObjectStorageSettings) -> list[Manifest]:
    """How a Job reaches object storage: endpoint, its instance's key, the keyset."""

    def secret(name: str, secret_name: str, key: str) -> Manifest:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}

    return [
        {"name": "BACKUP_S3_ENDPOINT", "value": storage.jobs_endpoint or ""},
        {"name": "BACKUP_S3_REGION", "value": storage.region},
        {"name": "BACKUP_S3_ADDRESSING", "value": storage.addressing_style},
        secret("AWS_ACCESS_KEY_ID", spec.names.backup_access, ACCESS_KEY_ID),
        secret("AWS_SECRET_ACCESS_KEY", spec.names.backup_access, SECRET_ACCESS_KEY),
        secret("BACKUP_KEYSET", storage.keyset_secret, KEYSET_KEY),
    ]


def job_name(spec: InstanceSpec, kind: str, token: str) -> str:
    """A Job name of at most 63 characters: `odoo-<hex>-<kind>-<12 hex of the token's hash>`.

    Hashed, not cut: ids sharing a prefix (time-ordered UUIDs) still get distinct Jobs.
    """
    digest = hashlib.sha256(token.encode()).hexdigest()[:12]
    return f"{spec.names.base}-{kind}-{digest}"


def _failure_policy(container: str) -> Manifest:
    """Run again after an outage (and a disruption); fail at once after anything else."""
    return {
        "rules": [
            # A node drained or a pod preempted: the work was cut short, not wrong. Not counted.
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            # The data or the request is at fault (a checksum, a corrupt archive, a refused
            # password): another attempt would fail the same way, later.
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": container,
                    "operator": "NotIn",
                    "values": [EXIT_RETRY, EXIT_KILLED],
                },
            },
        ]
    }


def _data_job(
    spec: InstanceSpec,
    tenants: TenantSettings,
    namespace: str,
    *,
    kind: str,
    name: str,
    arguments: list[str],
    beside_server: bool,
    storage: ObjectStorageSettings,
    backup_volume: bool = False,
) -> Manifest:
    _, image = image_of(spec, tenants)  # the Odoo image's user owns the filestore
    names = spec.names
    labels = {**spec.labels(kind), "app.kubernetes.io/name": SERVICE_NAME}
    pod: Manifest = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(image),
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": names.volume}},
            SCRATCH_VOLUME,
        ],
        "containers": [
            {
                "name": kind,
                "image": tenants.service_image,
                "command": ["instance-service", "job", kind],
                "args": [
                    "--database",
                    names.database,
                    "--data-dir",
                    DATA_PATH,
                    "--filestore",
                    f"{DATA_PATH}/filestore/{names.database}",
                    "--termination-log",
                    TERMINATION_LOG,
                    *arguments,
                ],
                "env": [
                    {"name": "PGHOST", "value": tenants.database_host},
                    {"name": "PGPORT", "value": str(tenants.database_port)},
                    {"name": "PGUSER", "value": names.role},
                    {"name": "PGDATABASE", "value": names.database},
                    {
                        "name": "PGPASSWORD",
                        "valueFrom": {
                            "secretKeyRef": {"name": names.secret, "key": "database-password"}
                        },
                    },
                    *([] if backup_volume else _storage_env(spec, storage)),
                ],
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "File",
                "resources": {
                    "requests": {"cpu": "100m", "memory": "256Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
                "securityContext": _CONTAINER_SECURITY,
                "volumeMounts": [
                    {"name": "data", "mountPath": DATA_PATH, "readOnly": kind == "backup"},
                    SCRATCH_MOUNT,
                ],
            }
        ],
    }
    if backup_volume:
        # Its own instance's directory only (the kubelet makes it if absent).
        pod["volumes"].append(
            {"name": "backups", "persistentVolumeClaim": {"claimName": tenants.backup_claim}}
        )
        pod["containers"][0]["volumeMounts"].append(
            {"name": "backups", "mountPath": backup_area(spec), "subPath": names.key}
        )
    if beside_server:
        # The data volume is ReadWriteOnce: a Job reading it while Odoo runs must share its node.
        pod["affinity"] = {
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": spec.selector()},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": instance_metadata(spec, name, namespace, labels),
        "spec": {
            "backoffLimit": RETRIES_AFTER_OUTAGE,
            "podFailurePolicy": _failure_policy(kind),
            "activeDeadlineSeconds": tenants.backup_deadline_seconds,
            # Read by the handler as soon as it ends; kept a day for `kubectl logs`.
            "ttlSecondsAfterFinished": FINISHED_JOB_TTL_SECONDS,
            "template": {
                "metadata": {"labels": {**tenants.pod_labels, **labels}},
                "spec": pod,
            },
        },
    }


def build_backup_job(
    spec: InstanceSpec,
    tenants: TenantSettings,
    storage: ObjectStorageSettings,
    namespace: str,
    backup_id: str,
    location: ObjectLocation,
    *,
    beside_server: bool,
) -> Manifest:
    """Dumps the database and packs the filestore, sealed, into the object at `location`."""
    return _data_job(
        spec,
        tenants,
        namespace,
        kind="backup",
        name=job_name(spec, "backup", backup_id),
        arguments=["--object", location.uri, "--part-size-mib", str(storage.part_size_mib)],
        beside_server=beside_server,
        storage=storage,
    )


def build_restore_job(
    spec: InstanceSpec,
    tenants: TenantSettings,
    storage: ObjectStorageSettings,
    namespace: str,
    *,
    name: str,
    location: str,
    sha256: str,
    sealed_as: str | None = None,
    neutralize: bool = False,
) -> Manifest:
    """Checks an archive's checksum, then restores database and filestore (Odoo is stopped).

    `location` is an object (`s3://...`) or, for a backup taken before backups went to object
    storage, an archive's path on the backup volume. A clone restores a copy of its source's
    backup, sealed under the source's key (`sealed_as`), and `neutralize`s it in the restore's
    transaction."""
    clone = [
        *(["--sealed-as", sealed_as] if sealed_as is not None else []),
        *(["--neutralize"] if neutralize else []),
    ]
    return _data_job(
        spec,
        tenants,
        namespace,
        kind="restore",
        name=name,
        arguments=["--archive", location, "--sha256", sha256, *clone],
        beside_server=False,
        storage=storage,
        backup_volume=ObjectLocation.parse(location) is None,
    )


def build_import_job(
    spec: InstanceSpec,
    tenants: TenantSettings,
    storage: ObjectStorageSettings,
    imports: ImportSettings,
    namespace: str,
    *,
    name: str,
    location: ObjectLocation,
) -> Manifest:
    """Checks a customer's database-manager zip (copied into the instance's prefix at
    `location`) within the bounds, then imports its database and filestore (Odoo not yet
    started)."""
    return _data_job(
        spec,
        tenants,
        namespace,
        kind="import",
        name=name,
        arguments=[
            "--archive",
            location.uri,
            "--odoo-version",
            spec.odoo_version,
            "--allowed-versions",
            ",".join(sorted(tenants.images)),
            "--max-members",
            str(imports.max_members),
            "--max-file-bytes",
            str(imports.max_file_mib * MIB),
            "--max-total-bytes",
            str(imports.total_bytes(spec.storage_gib)),
        ],
        beside_server=False,
        storage=storage,
    )


_NEVER = datetime.min.replace(tzinfo=UTC)
"""When a pod without a creation time was made, for ordering."""


def _attempt_order(pod: V1Pod) -> tuple[datetime, bool]:
    # Attempts are at least the Job controller's backoff (10 s) apart; a succeeded pod is the
    # last one a Job ever has.
    created = pod.metadata.creation_timestamp if pod.metadata is not None else None
    return (created or _NEVER, getattr(pod.status, "phase", None) == "Succeeded")


def report_of(pods: Sequence[V1Pod]) -> JobReport | None:
    """The report in the termination message of a Job's last attempt, if it left a valid one."""
    for pod in sorted(pods, key=_attempt_order, reverse=True):
        for status in getattr(pod.status, "container_statuses", None) or []:
            terminated = status.state.terminated if status.state else None
            if terminated is not None and terminated.message:
                try:
                    return JobReport.model_validate_json(terminated.message)
                except ValidationError:
                    return None
    return None
