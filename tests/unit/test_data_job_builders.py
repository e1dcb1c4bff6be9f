"""The data Jobs' manifests and reports, by value."""

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest

from handlers.jobs import JobEnd
from k8s.data_jobs import (
    RETRIES_AFTER_OUTAGE,
    build_backup_access_secret,
    build_backup_job,
    build_import_job,
    build_keyset_secret,
    build_restore_job,
    job_name,
    report_of,
)
from k8s.odoo_conf import config_fingerprint
from k8s.settings import ImportSettings, TenantSettings
from k8s.workload import CONFIG_ANNOTATION, build_deployment, build_update_job
from messages.job_reports import EXIT_KILLED, EXIT_RETRY, JobReport
from objectstore.locations import ObjectLocation, backup_location
from objectstore.settings import ObjectStorageSettings
from tests.tenant_specs import tenant_spec

TENANTS = TenantSettings(service_image="registry.example/instance-service:1.2.3")
BACKUP_ID = "5d0c9a7e-1f2b-4c3d-8e9f-a0b1c2d3e4f5"
STORAGE = ObjectStorageSettings(
    endpoint_url="https://s3.internal.example", job_endpoint_url="http://s3.storage.svc:8333"
)
OBJECT = "s3://instance-service-backups/backups/x/y.tar.tink"


def _backup_job(spec: Any, *, beside_server: bool) -> dict[str, Any]:
    location = backup_location("instance-service-backups", "backups", spec.instance_id, BACKUP_ID)
    return build_backup_job(
        spec, TENANTS, STORAGE, "tenants", BACKUP_ID, location, beside_server=beside_server
    )


DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_a_backup_job_runs_the_service_image_with_the_password_from_the_secret() -> None:
    spec = tenant_spec()
    job = _backup_job(spec, beside_server=True)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example/instance-service:1.2.3"
    assert container["command"] == ["instance-service", "job", "backup"]
    key = f"backups/{spec.instance_id}/{BACKUP_ID}.tar.tink"
    assert container["args"][-4:] == [
        "--object",
        f"s3://instance-service-backups/{key}",
        "--part-size-mib",
        "16",
    ]
    assert "--termination-log" in container["args"]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    env = {e["name"]: e for e in container["env"]}
    assert env["PGUSER"]["value"] == spec.names.role
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": spec.names.secret,
        "key": "database-password",
    }
    assert "value" not in env["PGPASSWORD"]
    # Object storage as the pods reach it, with the instance's own key and the keyset, each
    # from a Secret; the service's own key is never there.
    assert env["BACKUP_S3_ENDPOINT"]["value"] == "http://s3.storage.svc:8333"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": spec.names.backup_access,
        "key": "access-key-id",
    }
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == (
        spec.names.backup_access
    )
    assert env["BACKUP_KEYSET"]["valueFrom"]["secretKeyRef"] == {
        "name": "instance-service-backup-keyset",
        "key": "keyset.json",
    }
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/var/lib/odoo"]["readOnly"] is True
    assert "/backups" not in str(mounts)  # no backup volume: nothing on local disk
    assert pod["securityContext"]["runAsUser"] == 101  # the Odoo image's user owns the files
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "instance-service"
    assert labels["app.kubernetes.io/component"] == "backup"
    # Beside the running server: its data volume is ReadWriteOnce.
    term = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["labelSelector"]["matchLabels"] == spec.selector()


def test_a_backup_of_a_stopped_instance_goes_anywhere() -> None:
    job = _backup_job(tenant_spec(), beside_server=False)
    assert "affinity" not in job["spec"]["template"]["spec"]


def test_a_restore_job_checks_the_recorded_checksum_and_may_write() -> None:
    spec = tenant_spec()
    job = build_restore_job(
        spec, TENANTS, STORAGE, "tenants", name="r", location=OBJECT, sha256="ab" * 32
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["instance-service", "job", "restore"]
    assert container["args"][-4:] == ["--archive", OBJECT, "--sha256", "ab" * 32]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/var/lib/odoo"]["readOnly"] is False
    assert "BACKUP_KEYSET" in {e["name"] for e in container["env"]}


def test_a_clones_restore_opens_the_copy_as_its_source_sealed_it_and_neutralizes() -> None:
    job = build_restore_job(
        tenant_spec(),
        TENANTS,
        STORAGE,
        "tenants",
        name="r",
        location=OBJECT,
        sha256="ab" * 32,
        sealed_as="backups/source/b.tar.tink",
        neutralize=True,
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-7:] == [
        "--archive",
        OBJECT,
        "--sha256",
        "ab" * 32,
        "--sealed-as",
        "backups/source/b.tar.tink",
        "--neutralize",
    ]


def test_an_import_job_checks_the_archive_within_the_bounds_and_the_instances_storage() -> None:
    spec = tenant_spec(storage_gib=2)
    location = ObjectLocation("instance-service-backups", f"backups/{spec.instance_id}/in/a.zip")
    job = build_import_job(
        spec,
        TENANTS,
        STORAGE,
        ImportSettings(max_members=1000, max_file_mib=64),
        "tenants",
        name=job_name(spec, "import", "op"),
        location=location,
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["instance-service", "job", "import"]
    arguments = container["args"]
    options = dict(zip(arguments[::2], arguments[1::2], strict=False))
    assert options["--archive"] == location.uri
    assert options["--odoo-version"] == "17.0"
    assert options["--allowed-versions"] == "16.0,17.0,18.0"
    assert options["--max-members"] == "1000"
    assert options["--max-file-bytes"] == str(64 * 1024 * 1024)
    assert options["--max-total-bytes"] == str(2 * 1024 * 1024 * 1024)  # the storage, not 64 GiB
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/var/lib/odoo"]["readOnly"] is False
    assert {"AWS_ACCESS_KEY_ID", "BACKUP_KEYSET"} <= {e["name"] for e in container["env"]}
    assert "podFailurePolicy" in job["spec"]


def test_an_archive_on_the_backup_volume_is_restored_from_its_own_area_of_it() -> None:
    spec = tenant_spec()
    path = f"/backups/{spec.names.key}/y.tar"
    job = build_restore_job(spec, TENANTS, STORAGE, "t", name="r", location=path, sha256="a" * 64)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[f"/backups/{spec.names.key}"]["subPath"] == spec.names.key
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert TENANTS.backup_claim in claims
    assert "BACKUP_KEYSET" not in {e["name"] for e in container["env"]}


def test_the_access_and_keyset_secrets_hold_only_their_keys() -> None:
    spec = tenant_spec()
    access = build_backup_access_secret(spec, "t", "AKID", "s3cr3t")
    assert access["metadata"]["name"] == spec.names.backup_access
    assert access["stringData"] == {"access-key-id": "AKID", "secret-access-key": "s3cr3t"}
    keyset = build_keyset_secret(STORAGE, "t", '{"key": []}')
    assert keyset["metadata"]["name"] == "instance-service-backup-keyset"
    assert keyset["stringData"] == {"keyset.json": '{"key": []}'}


@pytest.mark.parametrize("kind", ["backup", "restore"])
def test_a_data_job_runs_again_only_when_its_database_went_away(kind: str) -> None:
    spec = tenant_spec()
    if kind == "backup":
        job = _backup_job(spec, beside_server=False)
    else:
        job = build_restore_job(
            spec, TENANTS, STORAGE, "t", name="r", location=OBJECT, sha256="a" * 64
        )
    assert job["spec"]["backoffLimit"] == RETRIES_AFTER_OUTAGE > 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"  # a policy needs it
    ignore, fail = job["spec"]["podFailurePolicy"]["rules"]
    assert ignore == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert fail == {
        "action": "FailJob",
        "onExitCodes": {
            "containerName": kind,
            "operator": "NotIn",
            "values": [EXIT_RETRY, EXIT_KILLED],
        },
    }
    assert job["spec"]["template"]["spec"]["containers"][0]["name"] == kind


def test_job_names_are_valid_and_stable() -> None:
    spec = tenant_spec()
    for kind in ("backup", "restore", "update", "rollback"):
        name = job_name(spec, kind, BACKUP_ID)
        assert DNS_1123_LABEL.match(name)
        assert len(name) <= 63
        assert name == job_name(spec, kind, BACKUP_ID)


def test_an_update_job_updates_every_module_in_the_new_image() -> None:
    spec = tenant_spec(odoo_version="18.0")
    job = build_update_job(spec, TENANTS, "tenants", "u")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "docker.io/library/odoo:18.0"
    assert container["command"] == [
        "odoo",
        "-c",
        "/etc/odoo/odoo.conf",
        "-d",
        spec.names.database,
        "-u",
        "all",
        "--stop-after-init",
    ]
    assert job["spec"]["backoffLimit"] == 0


def test_the_config_fingerprint_follows_the_plan_and_rolls_the_pod() -> None:
    small, big = tenant_spec(cpu_millicores=1000), tenant_spec(cpu_millicores=4000)
    assert config_fingerprint(small, TENANTS) != config_fingerprint(big, TENANTS)
    assert config_fingerprint(small, TENANTS) == config_fingerprint(tenant_spec(), TENANTS)
    annotations = build_deployment(big, TENANTS, "t", replicas=1)["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations[CONFIG_ANNOTATION] == config_fingerprint(big, TENANTS)


def _pod(message: str | None, created: int, phase: str = "Failed") -> Any:  # a V1Pod in its shape
    terminated = SimpleNamespace(message=message)
    status = SimpleNamespace(state=SimpleNamespace(terminated=terminated))
    return SimpleNamespace(
        metadata=SimpleNamespace(creation_timestamp=created),
        status=SimpleNamespace(container_statuses=[status], phase=phase),
    )


def test_the_report_is_read_from_the_newest_pod() -> None:
    old = JobReport(kind="backup", ok=False, error_code="x", error="old").encode().decode()
    new = JobReport(kind="backup", ok=True, sha256="0" * 64, size_bytes=3).encode().decode()
    report = report_of([_pod(old, 1), _pod(new, 2)])
    assert report is not None
    assert report.ok is True
    assert report_of([_pod("not json", 1)]) is None
    assert report_of([_pod(None, 1)]) is None
    assert json.loads(new)["sha256"] == "0" * 64


def test_the_report_of_a_job_that_ran_again_is_its_last_attempts() -> None:
    lost = JobReport(kind="backup", ok=False, error_code="database_unavailable", error="gone")
    done = JobReport(kind="backup", ok=True, sha256="1" * 64, size_bytes=5)
    # Created within the same second (a disruption's replacement is not delayed): the
    # succeeded pod is the last attempt.
    pods = [_pod(done.encode().decode(), 7, "Succeeded"), _pod(lost.encode().decode(), 7)]
    assert report_of(pods) == done
    assert report_of(list(reversed(pods))) == done


def test_a_job_that_ran_out_of_attempts_says_how_many_it_had() -> None:
    lost = JobReport(kind="backup", ok=False, error_code="database_unavailable", error="gone")
    end = JobEnd("odoo-x-backup-1", False, lost, "BackoffLimitExceeded: limit", attempts=5)
    assert end.failure() == "database_unavailable: gone; after 5 attempts"
    assert JobEnd.from_note(end.to_note()) == end
    once = JobEnd("odoo-x-restore-1", False, None, "PodFailurePolicy: exit code 1")
    assert once.failure() == "PodFailurePolicy: exit code 1"
    recorded_before = {k: v for k, v in once.to_note().items() if k != "attempts"}
    assert JobEnd.from_note(recorded_before) == once
