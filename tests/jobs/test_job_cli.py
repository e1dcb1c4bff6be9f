"""`instance-service job backup|restore` against the real PostgreSQL, as a Job would run it.

The command runs as a subprocess with only libpq's PG* variables for the tenant's role, a local
directory standing in for the backup volume, and a file standing in for the termination log.
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
from jobs.archive import APPLICATION_BACKUP, APPLICATION_RESTORE
from messages.job_reports import DATABASE_UNAVAILABLE, EXIT_FAILED, EXIT_RETRY
from store.tenant_database import TenantDatabases
from tests import stack
from tests.session_faults import end_session_waiting, table_locked

pytestmark = pytest.mark.postgres


class Tenant:
    """A tenant role and database with a table of known rows, and a filestore of known files."""

    def __init__(self, tmp_path: Path) -> None:
        self.name = f"odoo_{uuid.uuid4().hex}"
        self.password = secrets.token_urlsafe(32)
        self.filestore = tmp_path / "data" / "filestore" / self.name
        self.backups = tmp_path / "backups"
        self.report = tmp_path / "termination-log"
        self.port = default_layout().ports.postgres

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": self.name,
            "PGPASSWORD": self.password,
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

    def job(self, *args: str) -> tuple[int, dict[str, Any]]:
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
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert self.password not in result.stdout + result.stderr
        assert self.report.exists(), f"no report; stderr: {result.stderr[-2000:]}"
        return result.returncode, json.loads(self.report.read_text())


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[Tenant]:
    databases = TenantDatabases.connect(stack.require("postgres").postgres_admin_url)
    made = Tenant(tmp_path)
    databases.ensure(made.name, made.name, made.password)
    made.sql("CREATE TABLE partner (id int PRIMARY KEY, name text)")
    made.sql("INSERT INTO partner VALUES (1, 'Azure Interior'), (2, 'Deco Addict')")
    (made.filestore / "3f").mkdir(parents=True)
    (made.filestore / "3f" / "3f786850e387550fdab836ed7e6dc881de23001b").write_bytes(b"logo")
    (made.filestore / "checklist").mkdir()
    (made.filestore / "checklist" / "a1").write_bytes(b"\x00" * 1000)
    yield made
    databases.drop(made.name, made.name)
    databases.admin.dispose()


def test_backup_then_restore_brings_back_rows_and_files(tenant: Tenant) -> None:
    archive = tenant.backups / "one.tar"
    rows, files = tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files()

    status, report = tenant.job("backup", "--archive", str(archive))
    assert status == 0, report
    assert report["kind"] == "backup"
    assert report["ok"] is True
    assert report["size_bytes"] == archive.stat().st_size
    assert report["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert not list(tenant.backups.glob("*.partial"))

    tenant.sql("UPDATE partner SET name = 'changed' WHERE id = 1")
    tenant.sql("INSERT INTO partner VALUES (3, 'added after the backup')")
    tenant.sql("CREATE TABLE later (x int)")
    (tenant.filestore / "3f" / "3f786850e387550fdab836ed7e6dc881de23001b").write_bytes(b"new")
    (tenant.filestore / "added-later").write_bytes(b"x")

    status, restored = tenant.job(
        "restore", "--archive", str(archive), "--sha256", report["sha256"]
    )
    assert status == 0, restored
    assert restored["ok"] is True
    assert tenant.sql("SELECT * FROM partner ORDER BY id") == rows
    assert tenant.sql("SELECT to_regclass('later')") == [(None,)]
    assert tenant.files() == files


def test_a_checksum_mismatch_refuses_to_restore(tenant: Tenant) -> None:
    archive = tenant.backups / "one.tar"
    status, report = tenant.job("backup", "--archive", str(archive))
    assert status == 0
    tenant.sql("UPDATE partner SET name = 'changed' WHERE id = 1")
    with archive.open("ab") as file:
        file.write(b"tampered")

    status, refused = tenant.job("restore", "--archive", str(archive), "--sha256", report["sha256"])
    assert status == EXIT_FAILED  # bad data: the Job fails at once, no other attempt
    assert refused["ok"] is False
    assert refused["error_code"] == "checksum_mismatch"
    assert "not restored" in refused["error"]
    assert tenant.sql("SELECT name FROM partner WHERE id = 1") == [("changed",)]


def test_a_failed_dump_leaves_no_archive(tenant: Tenant) -> None:
    archive = tenant.backups / "two.tar"
    tenant.password = "wrong"  # pg_dump cannot log in
    status, report = tenant.job("backup", "--archive", str(archive))
    assert status == EXIT_FAILED  # refused, not away: another attempt would not help
    assert report["ok"] is False
    assert report["error_code"] == "pg_dump_failed"
    assert "password authentication failed" in report["error"]
    assert not archive.exists()
    assert list(tenant.backups.iterdir()) == []


def test_a_restore_that_fails_part_way_changes_nothing(tenant: Tenant, tmp_path: Path) -> None:
    # Enough rows that the dump's data, not its table of contents, is what gets cut off.
    tenant.sql(
        "CREATE TABLE bulk AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g"
    )
    good = tenant.backups / "good.tar"
    status, _ = tenant.job("backup", "--archive", str(good))
    assert status == 0
    _change(tenant)
    changed = (tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files())
    # An archive whose dump breaks off half-way, with a matching checksum: pg_restore fails
    # after psql has already run part of the script.
    broken = tenant.backups / "broken.tar"
    with tarfile.open(good) as source, tarfile.open(broken, "w") as target:
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            if member.name == "database.dump" and data is not None:
                content = data.read()
                member.size = len(content) * 2 // 3
                cut = content[: member.size]
                target.addfile(member, io.BytesIO(cut))
            else:
                target.addfile(member, data)
    checksum = hashlib.sha256(broken.read_bytes()).hexdigest()
    cut_dump = tmp_path / "cut.dump"
    cut_dump.write_bytes(cut)
    partial = subprocess.run(
        ["pg_restore", "--file=-", str(cut_dump)], capture_output=True, check=False
    )
    assert partial.returncode != 0
    assert b"CREATE TABLE" in partial.stdout  # SQL went to psql before the failure

    status, report = tenant.job("restore", "--archive", str(broken), "--sha256", checksum)
    assert status == EXIT_FAILED
    assert report["error_code"] == "pg_restore_failed"
    assert (tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files()) == changed
    assert tenant.sql("SELECT to_regclass('later')") == [("later",)]


def _change(tenant: Tenant) -> None:
    tenant.sql("UPDATE partner SET name = 'changed' WHERE id = 1")
    tenant.sql("CREATE TABLE later (x int)")
    (tenant.filestore / "added-later").write_bytes(b"x")


def test_a_filestore_with_a_symbolic_link_is_refused_at_backup(tenant: Tenant) -> None:
    (tenant.filestore / "link").symlink_to(tenant.filestore / "checklist")
    status, report = tenant.job("backup", "--archive", str(tenant.backups / "x.tar"))
    assert status == EXIT_FAILED
    assert report["error_code"] == "filestore_invalid"
    assert not (tenant.backups / "x.tar").exists()


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
    made = tenant.backups / "mine.tar"
    status, report = tenant.job("backup", "--archive", str(made))
    assert status == 0, report
    other_tenant = tenant.backups / "other-tenant"
    other_tenant.mkdir()
    (other_tenant / "their.tar").write_bytes(b"another tenant's archive")
    swapped = tenant.filestore if linked == "filestore/<db>" else tenant.filestore.parent
    _swap_for_link(swapped, tenant.backups)
    data_dir = str(tenant.filestore.parent.parent)

    archive = tenant.backups / "stolen.tar"
    status, report = tenant.job("backup", "--archive", str(archive), "--data-dir", data_dir)
    assert status == EXIT_FAILED
    assert report["error_code"] == "filestore_unsafe", report
    assert "symbolic link" in report["error"]
    assert not archive.exists()

    checksum = hashlib.sha256(made.read_bytes()).hexdigest()
    args = ("--archive", str(made), "--sha256", checksum, "--data-dir", data_dir)
    status, report = tenant.job("restore", *args)
    assert status == EXIT_FAILED
    assert report["error_code"] == "filestore_unsafe", report
    # Nothing was unpacked where the link points.
    assert sorted(p.name for p in tenant.backups.iterdir()) == ["mine.tar", "other-tenant"]


def test_a_filestore_outside_the_data_directory_is_refused(tenant: Tenant, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    archive = tenant.backups / "x.tar"
    status, report = tenant.job("backup", "--archive", str(archive), "--data-dir", str(elsewhere))
    assert status == EXIT_FAILED
    assert report["error_code"] == "filestore_unsafe"
    assert "not inside the data directory" in report["error"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_database_that_does_not_answer_asks_for_another_attempt(tenant: Tenant) -> None:
    archive = tenant.backups / "three.tar"
    tenant.port = _closed_port()  # as while PostgreSQL restarts: nobody listens
    status, report = tenant.job("backup", "--archive", str(archive))
    assert status == EXIT_RETRY
    assert report["ok"] is False
    assert report["error_code"] == DATABASE_UNAVAILABLE
    assert "Connection refused" in report["error"]
    assert list(tenant.backups.iterdir()) == []


def test_a_dump_whose_session_the_server_ends_asks_for_another_attempt(tenant: Tenant) -> None:
    archive = tenant.backups / "four.tar"
    admin_url = stack.require("postgres").postgres_admin_url
    with table_locked(tenant.conninfo(), "partner"), ThreadPoolExecutor(1) as pool:
        running = pool.submit(tenant.job, "backup", "--archive", str(archive))
        ended = end_session_waiting(admin_url, tenant.name)
        status, report = running.result(timeout=60)
    assert ended.query.startswith("LOCK TABLE")  # pg_dump had begun: connected, in its snapshot
    assert status == EXIT_RETRY, report
    assert report["error_code"] == DATABASE_UNAVAILABLE
    assert "terminating connection due to administrator command" in report["error"]
    assert list(tenant.backups.iterdir()) == []  # nothing that looks like a backup
    assert ended.application == APPLICATION_BACKUP  # a DBA sees whose session it is

    status, report = tenant.job("backup", "--archive", str(archive))  # the next attempt
    assert status == 0, report
    assert report["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_a_restore_whose_session_the_server_ends_changes_nothing_and_asks_again(
    tenant: Tenant,
) -> None:
    archive = tenant.backups / "five.tar"
    status, made = tenant.job("backup", "--archive", str(archive))
    assert status == 0
    rows, files = tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files()
    _change(tenant)
    changed = (tenant.sql("SELECT * FROM partner ORDER BY id"), tenant.files())
    admin_url = stack.require("postgres").postgres_admin_url
    restore = ("restore", "--archive", str(archive), "--sha256", made["sha256"])
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
