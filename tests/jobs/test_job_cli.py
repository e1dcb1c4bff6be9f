"""`instance-service job backup|restore` against the real PostgreSQL and the real object
storage, as a Job would run it.

The command runs as a subprocess with only what a Job's pod gets: libpq's PG* variables for the
tenant's role, the object storage's endpoint, the tenant's own scoped key (made by the service's
access port on the real server) and the keyset; a file stands in for the termination log.
"""

import hashlib
import io
import json
import os
import secrets
import socket
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from devstack.layout import default_layout
from devstack.seaweedfs import backup_settings
from jobs.archive import APPLICATION_BACKUP, APPLICATION_RESTORE
from jobs.offsite import DUMP_MEMBER
from messages.job_reports import DATABASE_UNAVAILABLE, EXIT_FAILED, EXIT_RETRY
from objectstore.backups import ObjectBackups
from objectstore.client import s3_client
from objectstore.locations import ObjectLocation
from objectstore.sealing import Sealer
from store.tenant_database import TenantDatabases
from tests import stack
from tests.session_faults import end_session_waiting, table_locked

pytestmark = [pytest.mark.postgres, pytest.mark.objectstore]


class Tenant:
    """A tenant role and database with a table of known rows, a filestore of known files, and
    its own scoped key to its prefix of the backup bucket."""

    def __init__(self, tmp_path: Path, storage: ObjectBackups) -> None:
        self.instance_id = str(uuid.uuid4())
        self.name = f"odoo_{uuid.UUID(self.instance_id).hex}"
        self.password = secrets.token_urlsafe(32)
        self.filestore = tmp_path / "data" / "filestore" / self.name
        self.elsewhere = tmp_path / "elsewhere"
        self.report = tmp_path / "termination-log"
        self.port = default_layout().ports.postgres
        self.storage = storage
        key = storage.grant(self.instance_id, None)
        assert key is not None
        self.key = key
        self.endpoint = storage.settings.endpoint_url or ""
        settings = storage.settings
        secret = settings.secret_access_key.get_secret_value() if settings.secret_access_key else ""
        self.admin = s3_client(self.endpoint, settings.region, settings.access_key_id or "", secret)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": self.name,
            "PGPASSWORD": self.password,
            "BACKUP_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key.key_id,
            "AWS_SECRET_ACCESS_KEY": self.key.secret,
            "BACKUP_KEYSET": self.storage.keyset,
        }

    def conninfo(self) -> str:
        return make_conninfo(
            host="127.0.0.1",
            port=default_layout().ports.postgres,
            dbname=self.name,
            user=self.name,
            password=self.password,
        )

    def sql(self, statement: str) -> list[Any]:
        with psycopg.connect(self.conninfo(), autocommit=True) as connection:
            cursor = connection.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def files(self) -> dict[str, bytes]:
        return {
            str(path.relative_to(self.filestore)): path.read_bytes()
            for path in sorted(self.filestore.rglob("*"))
            if path.is_file()
        }

    def location(self, backup_id: str | None = None) -> ObjectLocation:
        return self.storage.location(self.instance_id, backup_id or str(uuid.uuid4()))

    def stored(self, location: ObjectLocation) -> bytes:
        """The object's bytes, read with the service's key."""
        body = self.admin.get_object(Bucket=location.bucket, Key=location.key)["Body"]
        return bytes(body.read())

    def put(self, location: ObjectLocation, data: bytes) -> None:
        self.admin.put_object(Bucket=location.bucket, Key=location.key, Body=data)

    def objects(self) -> list[str]:
        """Every object under the tenant's prefix."""
        listed = self.admin.list_objects_v2(
            Bucket=self.storage.settings.bucket,
            Prefix=self.storage.instance_prefix(self.instance_id),
        )
        return [item["Key"] for item in listed.get("Contents", [])]

    def uploads(self) -> list[str]:
        """Unfinished multipart uploads under the tenant's prefix."""
        listed = self.admin.list_multipart_uploads(
            Bucket=self.storage.settings.bucket,
            Prefix=self.storage.instance_prefix(self.instance_id),
        )
        return [upload["Key"] for upload in listed.get("Uploads", [])]

    def job(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        self.report.unlink(missing_ok=True)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "instance_service",
                "job",
                *args,
                "--database",
                self.name,
                "--filestore",
                str(self.filestore),
                "--termination-log",
                str(self.report),
            ],
            env={**self.env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = result.stdout + result.stderr
        assert self.password not in output
        assert self.key.secret not in output
        assert self.report.exists(), f"no report; stderr: {result.stderr[-2000:]}"
        return result.returncode, json.loads(self.report.read_text())

    def backup(self, location: ObjectLocation, *more: str) -> tuple[int, dict[str, Any]]:
        return self.job("backup", "--object", location.uri, "--part-size-mib", "5", *more)

    def restore(self, source: str, sha256: str, *more: str) -> tuple[int, dict[str, Any]]:
        return self.job("restore", "--archive", source, "--sha256", sha256, *more)


@pytest.fixture(scope="module")
def storage() -> ObjectBackups:
    stack.require("objectstore")
    return ObjectBackups.connect(backup_settings(default_layout()))


@pytest.fixture
def tenant(tmp_path: Path, storage: ObjectBackups) -> Iterator[Tenant]:
    databases = TenantDatabases.connect(stack.require("postgres").postgres_admin_url)
    made = Tenant(tmp_path, storage)
    databases.ensure(made.name, made.name, made.password)
    made.sql("CREATE TABLE partner (id int PRIMARY KEY, name text)")
    made.sql("INSERT INTO partner VALUES (1, 'Azure Interior'), (2, 'Deco Addict')")
    (made.filestore / "3f").mkdir(parents=True)
    (made.filestore / "3f" / "3f786850e387550fdab836ed7e6dc881de23001b").write_bytes(b"logo")
    (made.filestore / "checklist").mkdir()
    (made.filestore / "checklist" / "a1").write_bytes(b"\x00" * 1000)
    yield made
    storage.remove([ObjectLocation(storage.settings.bucket, key) for key in made.objects()])
    storage.revoke(made.instance_id)
    databases.drop(made.name, made.name)
    databases.admin.dispose()


def _change(tenant: Tenant) -> None:
    tenant.sql("UPDATE partner SET name = 'changed' WHERE id = 1")
    tenant.sql("CREATE TABLE later (x int)")
    (tenant.filestore / "added-later").write_bytes(b"x")


def _archive(tenant: Tenant, location: ObjectLocation) -> bytes:
    """The object opened: the plain tar the Job packed."""
    sealed = io.BytesIO(tenant.stored(location))
    return Sealer(tenant.storage.keyset).opening(sealed, location.key).read()


class _Kept(io.BytesIO):
    """Keeps its bytes when closed (the sealing stream closes what it writes to)."""

    value = b""

    def close(self) -> None:
        self.value = self.getvalue()
        super().close()


def _seal(tenant: Tenant, location: ObjectLocation, archive: bytes) -> bytes:
    out = _Kept()
    with Sealer(tenant.storage.keyset).sealing(out, location.key) as sealed:
        sealed.write(archive)
    return out.value


def test_backup_then_restore_brings_back_rows_and_files(tenant: Tenant) -> None:
    location = tenant.location()
    rows, files = tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files()
    # Enough data for several parts of the multipart upload (5 MiB each here).
    tenant.sql(
        "CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS v "
        "FROM generate_series(1, 200000) g"
    )
    (tenant.filestore / "checklist" / "big").write_bytes(os.urandom(7 * 1024 * 1024))
    files = tenant.files()

    status, report = tenant.backup(location)
    assert status == 0, report
    assert report["kind"] == "backup"
    assert report["ok"] is True
    assert report["location"] == location.uri
    stored = tenant.stored(location)
    assert report["size_bytes"] == len(stored) > 10 * 1024 * 1024
    assert report["sha256"] == hashlib.sha256(stored).hexdigest()
    described = tenant.storage.describe(location)
    assert described is not None
    assert described.sha256 == report["sha256"]  # its tag
    assert tenant.uploads() == []
    # Sealed: neither the rows nor the files can be read off the object.
    assert b"Azure Interior" not in stored
    with tarfile.open(fileobj=io.BytesIO(_archive(tenant, location))) as packed:
        members = packed.getnames()
    assert f"{DUMP_MEMBER}000001" in members
    assert "filestore/checklist/big" in members

    _change(tenant)
    tenant.sql("INSERT INTO partner VALUES (3, 'added after the backup')")
    (tenant.filestore / "3f" / "3f786850e387550fdab836ed7e6dc881de23001b").write_bytes(b"new")

    status, restored = tenant.restore(location.uri, report["sha256"])
    assert status == 0, restored
    assert restored["ok"] is True
    assert tenant.sql("SELECT * FROM partner ORDER BY id") == rows
    assert tenant.sql("SELECT count(*) FROM bulk") == [(200000,)]
    assert tenant.sql("SELECT to_regclass('later')") == [(None,)]
    assert tenant.files() == files


def test_an_archive_on_the_backup_volume_written_before_object_storage_is_still_restored(
    tenant: Tenant, tmp_path: Path
) -> None:
    rows, files = tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files()
    dump = tmp_path / "database.dump"
    subprocess.run(
        ["pg_dump", "--format=custom", "--no-owner", f"--file={dump}", tenant.name],
        env=tenant.env(),
        check=True,
    )
    archive = tmp_path / "backups" / "old.tar"
    archive.parent.mkdir()
    with tarfile.open(archive, "w") as tar:  # the layout volume backups had
        tar.add(dump, arcname="database.dump")
        tar.add(tenant.filestore, arcname="filestore")
    _change(tenant)

    checksum = hashlib.sha256(archive.read_bytes()).hexdigest()
    status, report = tenant.restore(str(archive), checksum)
    assert status == 0, report
    assert (tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files()) == (rows, files)


def test_a_checksum_mismatch_refuses_to_restore(tenant: Tenant) -> None:
    location = tenant.location()
    status, _ = tenant.backup(location)
    assert status == 0
    _change(tenant)
    changed = (tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files())

    status, refused = tenant.restore(location.uri, "0" * 64)
    assert status == EXIT_FAILED  # bad data: the Job fails at once, no other attempt
    assert refused["ok"] is False
    assert refused["error_code"] == "checksum_mismatch"
    assert "not restored" in refused["error"]
    assert (tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files()) == changed


@pytest.mark.parametrize("damage", ["flipped byte", "cut short", "moved from another key"])
def test_an_object_that_does_not_open_changes_nothing(tenant: Tenant, damage: str) -> None:
    location = tenant.location()
    status, _ = tenant.backup(location)
    assert status == 0
    _change(tenant)
    changed = (tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files())
    stored = tenant.stored(location)
    target = location
    if damage == "flipped byte":
        middle = len(stored) // 2
        stored = stored[:middle] + bytes([stored[middle] ^ 1]) + stored[middle + 1 :]
    elif damage == "cut short":
        stored = stored[: len(stored) - 100]
    else:
        target = tenant.location()  # the same bytes under another backup's key
    tenant.put(target, stored)

    status, refused = tenant.restore(target.uri, hashlib.sha256(stored).hexdigest())
    assert status == EXIT_FAILED
    assert refused["error_code"] == "backup_invalid", refused
    assert "does not open" in refused["error"]
    assert (tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files()) == changed


def test_a_failed_dump_leaves_no_object(tenant: Tenant) -> None:
    location = tenant.location()
    tenant.password = "wrong"  # pg_dump cannot log in
    status, report = tenant.backup(location)
    assert status == EXIT_FAILED  # refused, not away: another attempt would not help
    assert report["ok"] is False
    assert report["error_code"] == "pg_dump_failed"
    assert "password authentication failed" in report["error"]
    assert tenant.objects() == []
    assert tenant.uploads() == []  # the Job aborted its own upload


def test_a_restore_that_fails_part_way_changes_nothing(tenant: Tenant, tmp_path: Path) -> None:
    # Enough rows that the dump's data, not its table of contents, is what gets cut off.
    tenant.sql(
        "CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g"
    )
    good = tenant.location()
    status, _ = tenant.backup(good)
    assert status == 0
    _change(tenant)
    changed = (tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files())
    # An archive whose dump breaks off half-way, sealed and checksummed as a good one: pg_restore
    # fails after psql has already run part of the script.
    cut_archive = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(_archive(tenant, good))) as source,
        tarfile.open(fileobj=cut_archive, mode="w") as target,
    ):
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            if member.name.startswith(DUMP_MEMBER) and data is not None:
                content = data.read()
                member.size = len(content) * 2 // 3
                cut = content[: member.size]
                target.addfile(member, io.BytesIO(cut))
            else:
                target.addfile(member, data)
    broken = tenant.location()
    sealed = _seal(tenant, broken, cut_archive.getvalue())
    tenant.put(broken, sealed)
    cut_dump = tmp_path / "cut.dump"
    cut_dump.write_bytes(cut)
    partial = subprocess.run(
        ["pg_restore", "--file=-", str(cut_dump)], capture_output=True, check=False
    )
    assert partial.returncode != 0
    assert b"CREATE TABLE" in partial.stdout  # SQL went to psql before the failure

    status, report = tenant.restore(broken.uri, hashlib.sha256(sealed).hexdigest())
    assert status == EXIT_FAILED
    assert report["error_code"] == "pg_restore_failed"
    assert (tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files()) == changed
    assert tenant.sql("SELECT to_regclass('later')") == [("later",)]


def test_a_filestore_with_a_symbolic_link_is_refused_at_backup(tenant: Tenant) -> None:
    (tenant.filestore / "link").symlink_to(tenant.filestore / "checklist")
    location = tenant.location()
    status, report = tenant.backup(location)
    assert status == EXIT_FAILED
    assert report["error_code"] == "filestore_invalid"
    assert tenant.objects() == []


def _swap_for_link(directory: Path, target: Path) -> None:
    """What a tenant's own code could do on its volume: its directory becomes a link."""
    for child in sorted(directory.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    directory.rmdir()
    directory.symlink_to(target, target_is_directory=True)


@pytest.mark.parametrize("linked", ["filestore/<db>", "filestore"])
def test_a_filestore_reached_through_a_link_is_refused_by_backup_and_restore(
    tenant: Tenant, linked: str
) -> None:
    made = tenant.location()
    status, report = tenant.backup(made)
    assert status == 0, report
    tenant.elsewhere.mkdir()
    (tenant.elsewhere / "their-file").write_bytes(b"another volume's data")
    swapped = tenant.filestore if linked == "filestore/<db>" else tenant.filestore.parent
    _swap_for_link(swapped, tenant.elsewhere)
    data_dir = str(tenant.filestore.parent.parent)

    stolen = tenant.location()
    status, report = tenant.backup(stolen, "--data-dir", data_dir)
    assert status == EXIT_FAILED
    assert report["error_code"] == "filestore_unsafe", report
    assert "symbolic link" in report["error"]
    assert tenant.objects() == [made.key]

    status, report = tenant.restore(made.uri, report_sha(tenant, made), "--data-dir", data_dir)
    assert status == EXIT_FAILED
    assert report["error_code"] == "filestore_unsafe", report
    # Nothing was unpacked where the link points.
    assert sorted(p.name for p in tenant.elsewhere.iterdir()) == ["their-file"]


def report_sha(tenant: Tenant, location: ObjectLocation) -> str:
    return hashlib.sha256(tenant.stored(location)).hexdigest()


def test_a_filestore_outside_the_data_directory_is_refused(tenant: Tenant, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status, report = tenant.backup(tenant.location(), "--data-dir", str(elsewhere))
    assert status == EXIT_FAILED
    assert report["error_code"] == "filestore_unsafe"
    assert "not inside the data directory" in report["error"]


def test_another_tenants_key_is_refused_and_asks_for_no_other_attempt(
    tenant: Tenant, storage: ObjectBackups
) -> None:
    other_id = str(uuid.uuid4())
    other = storage.grant(other_id, None)
    assert other is not None
    try:
        env = {"AWS_ACCESS_KEY_ID": other.key_id, "AWS_SECRET_ACCESS_KEY": other.secret}
        status, report = tenant.job(
            "backup", "--object", tenant.location().uri, "--part-size-mib", "5", env=env
        )
    finally:
        storage.revoke(other_id)
    assert status == EXIT_FAILED
    assert report["error_code"] == "storage_refused"
    assert "AccessDenied" in report["error"]
    assert tenant.objects() == []


def test_object_storage_that_does_not_answer_asks_for_another_attempt(tenant: Tenant) -> None:
    env = {"BACKUP_S3_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    status, report = tenant.job(
        "backup", "--object", tenant.location().uri, "--part-size-mib", "5", env=env
    )
    assert status == EXIT_RETRY
    assert report["error_code"] == "storage_unavailable"
    assert tenant.objects() == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_database_that_does_not_answer_asks_for_another_attempt(tenant: Tenant) -> None:
    tenant.port = _closed_port()  # as while PostgreSQL restarts: nobody listens
    status, report = tenant.backup(tenant.location())
    assert status == EXIT_RETRY
    assert report["ok"] is False
    assert report["error_code"] == DATABASE_UNAVAILABLE
    assert "Connection refused" in report["error"]
    assert tenant.objects() == []
    assert tenant.uploads() == []


def test_a_dump_whose_session_the_server_ends_asks_for_another_attempt(tenant: Tenant) -> None:
    location = tenant.location()
    admin_url = stack.require("postgres").postgres_admin_url
    with table_locked(tenant.conninfo(), "partner"), ThreadPoolExecutor(1) as pool:
        running = pool.submit(tenant.backup, location)
        ended = end_session_waiting(admin_url, tenant.name)
        status, report = running.result(timeout=60)
    assert ended.query.startswith("LOCK TABLE")  # pg_dump had begun: connected, in its snapshot
    assert status == EXIT_RETRY, report
    assert report["error_code"] == DATABASE_UNAVAILABLE
    assert "terminating connection due to administrator command" in report["error"]
    assert tenant.objects() == []  # nothing that looks like a backup
    assert ended.application == APPLICATION_BACKUP  # a DBA sees whose session it is

    status, report = tenant.backup(location)  # the next attempt
    assert status == 0, report
    assert report["sha256"] == hashlib.sha256(tenant.stored(location)).hexdigest()


def test_a_restore_whose_session_the_server_ends_changes_nothing_and_asks_again(
    tenant: Tenant,
) -> None:
    location = tenant.location()
    status, made = tenant.backup(location)
    assert status == 0
    rows, files = tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files()
    _change(tenant)
    changed = (tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files())
    admin_url = stack.require("postgres").postgres_admin_url
    restore = ("restore", "--archive", location.uri, "--sha256", made["sha256"])
    with table_locked(tenant.conninfo(), "partner"), ThreadPoolExecutor(1) as pool:
        running = pool.submit(tenant.job, *restore)
        ended = end_session_waiting(admin_url, tenant.name)
        status, report = running.result(timeout=60)
    assert "DROP SCHEMA public CASCADE" in ended.query  # inside the restore's transaction
    assert status == EXIT_RETRY, report
    assert report["error_code"] == DATABASE_UNAVAILABLE
    assert (tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files()) == changed
    assert ended.application == APPLICATION_RESTORE

    status, report = tenant.job(*restore)  # the next attempt
    assert status == 0, report
    assert (tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files()) == (rows, files)
