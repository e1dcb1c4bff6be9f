"""What a tenant's archive holds, and restoring it: its database (pg_dump custom format) and
its filestore.

Backups go to object storage (jobs/offsite.py). Archives on the backup volume, written before
that (one tar holding `database.dump` and `filestore/`), are still restored from here: `restore`
checks the archive's SHA-256 against the recorded one before it touches anything.

Connection details come from libpq's environment (PGHOST, PGPORT, PGUSER, PGPASSWORD): the
password is never on a command line. A failure because the database went away is a JobError
with `retry` (jobs/outages.py): both operations may simply run again.
"""

import contextlib
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jobs.outages import client_environment, outage_in
from messages.job_reports import DATABASE_UNAVAILABLE

CHUNK = 1024 * 1024
APPLICATION_BACKUP = "instance-service backup"
APPLICATION_RESTORE = "instance-service restore"
"""The Jobs' application_name in pg_stat_activity."""
DUMP_NAME = "database.dump"
FILESTORE_NAME = "filestore"


class JobError(Exception):
    """A step of a backup or restore failed; `code` says which kind of failure.

    `retry`: the database went away, not the data; running the Job again may succeed.
    """

    def __init__(self, code: str, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retry = retry


def database_lost(what: str, status: int, line: str) -> JobError:
    return JobError(DATABASE_UNAVAILABLE, f"{what} exited with {status}: {line}", retry=True)


@dataclass(frozen=True)
class Archive:
    """A finished backup archive."""

    path: Path
    size_bytes: int
    sha256: str


def sha256_of(path: Path) -> str:
    """The file's SHA-256, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def add_filestore(tar: tarfile.TarFile, filestore: Path) -> None:
    """The filestore's directories and regular files under `filestore/` (absent: empty).

    Odoo only writes regular files there; anything else could not be restored, so it fails
    the backup now rather than the restore later. A file Odoo removes while the archive is
    being written (its garbage collection) is skipped: the dump no longer refers to it.
    """
    directory = tarfile.TarInfo(FILESTORE_NAME)
    directory.type, directory.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(directory)
    if not filestore.is_dir():
        return
    for root, directories, files in os.walk(filestore):
        base = Path(root)
        for name in sorted(directories) + sorted(files):
            path = base / name
            arcname = f"{FILESTORE_NAME}/{path.relative_to(filestore)}"
            if path.is_symlink():
                raise JobError("filestore_invalid", f"{path} is a symbolic link")
            try:
                tar.add(path, arcname=arcname, recursive=False)
            except FileNotFoundError:
                continue
        directories.sort()


def check_filestore(filestore: Path, data_dir: Path) -> None:
    """The filestore must be a plain directory inside the data directory, reached by no link.

    Odoo keeps a database's files in `<data dir>/filestore/<database>`, on the tenant's own
    volume, which the tenant's code can change. Had it replaced that directory (or `filestore/`)
    with a link to another volume mounted in the Job (the backup volume, say), a backup would
    pack what the link points at and a restore would unpack into it: refused with
    `filestore_unsafe` before anything is read or written.
    """
    try:
        relative = filestore.relative_to(data_dir)
    except ValueError:
        raise JobError(
            "filestore_unsafe", f"the filestore {filestore} is not inside the data directory"
        ) from None
    path = data_dir
    for part in relative.parts:
        path = path / part
        if path.is_symlink():
            raise JobError(
                "filestore_unsafe",
                f"{path} is a symbolic link (to {os.readlink(path)}): the filestore must be a "
                f"directory inside {data_dir}; not backed up or restored",
            )
    if filestore.exists() and not filestore.resolve().is_relative_to(data_dir.resolve()):
        raise JobError(
            "filestore_unsafe", f"{filestore} resolves outside the data directory {data_dir}"
        )


RESET_SCHEMA = b"DROP SCHEMA public CASCADE;\nCREATE SCHEMA public;\n"
"""Odoo keeps everything in `public`: emptied first, so nothing made after the backup stays."""


def _restore_database(dump: Path, database: str, finish: str = "") -> None:
    """Replace the database's contents with the dump's, in one transaction; `finish` (SQL) runs
    in it last (a clone's neutralization).

    pg_restore turns the dump into SQL, streamed into psql between our own BEGIN and COMMIT
    (psql's --single-transaction does not apply to standard input). psql stops at the first
    error (ON_ERROR_STOP); COMMIT is sent only once pg_restore has finished cleanly, so a
    failure anywhere ends the session with the transaction open, and PostgreSQL rolls it
    back: a failed restore changes nothing.
    """
    with tempfile.TemporaryFile() as psql_errors, tempfile.TemporaryFile() as script_errors:
        psql = start_psql(database, psql_errors)
        script = subprocess.Popen(
            ["pg_restore", "--no-owner", "--no-acl", "--file=-", str(dump)],
            stdout=subprocess.PIPE,
            stderr=script_errors,
        )
        if psql.stdin is None or script.stdout is None:
            raise JobError("pg_restore_failed", "could not connect pg_restore to psql")
        try:
            psql.stdin.write(b"BEGIN;\n" + RESET_SCHEMA)
            shutil.copyfileobj(script.stdout, psql.stdin, CHUNK)
            converted = script.wait()
            if converted == 0:
                psql.stdin.write(finish.encode() + b"\nCOMMIT;\n")
        except BrokenPipeError:
            converted = script.wait()  # psql stopped at an error: reported below
        finally:
            script.stdout.close()
            with contextlib.suppress(BrokenPipeError):
                psql.stdin.close()
        check_psql(psql.wait(), psql_errors)
        if converted != 0:
            detail = last_line(script_errors)
            raise JobError("pg_restore_failed", f"pg_restore exited with {converted}: {detail}")


def start_psql(database: str, errors: IO[bytes]) -> "subprocess.Popen[bytes]":
    """psql on `database` as the tenant (libpq's environment), reading SQL from its standard
    input, stopping at the first error, its messages to `errors`."""
    quiet = {
        **client_environment(APPLICATION_RESTORE),
        "PGOPTIONS": "-c client_min_messages=warning",
    }
    return subprocess.Popen(
        ["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", f"--dbname={database}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=errors,
        env=quiet,
    )


def check_psql(status: int, errors: IO[bytes]) -> None:
    """A JobError unless psql ended well: `retry` when the database went away.

    The session's end rolled the transaction back (or, lost in COMMIT, kept all of it): running
    the whole restore again gives the same result either way."""
    if status == 0:
        return
    lost = outage_in(_text(errors))
    if lost is not None:
        raise database_lost("psql", status, lost)
    raise JobError("pg_restore_failed", f"psql exited with {status}: {last_line(errors)}")


def _text(file: Any) -> str:
    file.seek(0)
    return str(file.read().decode(errors="replace")).strip()


def last_line(file: Any) -> str:
    lines = _text(file).splitlines()
    return lines[-1] if lines else "no message"


def _check_members(tar: tarfile.TarFile, archive: Path) -> None:
    """Only plain files and directories under the archive's own two names."""
    for member in tar.getmembers():
        name = Path(member.name)
        top = name.parts[0] if name.parts else ""
        unsafe = name.is_absolute() or ".." in name.parts or top not in (DUMP_NAME, FILESTORE_NAME)
        if unsafe or not (member.isfile() or member.isdir()):
            raise JobError("backup_invalid", f"{archive} holds an unexpected entry {member.name!r}")


def restore(
    archive: Path,
    expected_sha256: str,
    database: str,
    filestore: Path,
    data_dir: Path | None = None,
) -> None:
    """Bring `database` and `filestore` back to the archive, after checking its checksum."""
    check_filestore(filestore, data_dir or filestore.parent.parent)
    if not archive.is_file():
        raise JobError("backup_missing", f"no backup archive at {archive}")
    actual = sha256_of(archive)
    if actual != expected_sha256:
        raise JobError(
            "checksum_mismatch",
            f"{archive} has SHA-256 {actual}, the backup recorded {expected_sha256}: not restored",
        )
    filestore.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="restore-", dir=filestore.parent) as work:
        with tarfile.open(archive) as tar:
            _check_members(tar, archive)
            tar.extractall(work)  # noqa: S202 - every member was checked just above
        apply_restore(Path(work), database, filestore)


def apply_restore(work: Path, database: str, filestore: Path, finish: str = "") -> None:
    """Replace the database with `work/database.dump` (one transaction, `finish` run last in
    it), then swap the filestore for `work/filestore`: the unpacked, checked archive becomes
    the tenant's data."""
    dump = work / DUMP_NAME
    if not dump.is_file():
        raise JobError("backup_invalid", f"the archive holds no {DUMP_NAME}")
    _restore_database(dump, database, finish)
    restored = work / FILESTORE_NAME
    restored.mkdir(exist_ok=True)  # an archive of an empty filestore
    old = filestore.with_name(filestore.name + ".before-restore")
    shutil.rmtree(old, ignore_errors=True)
    if filestore.exists():
        filestore.rename(old)
    restored.rename(filestore)
    shutil.rmtree(old, ignore_errors=True)
