"""Importing a customer's Odoo database-manager backup: every member checked before any is used.

Odoo's database manager (`/web/database/backup`, format zip) writes `dump.sql` (pg_dump's plain
SQL, made with --no-owner), `manifest.json` (the Odoo version, modules, PostgreSQL version) and
`filestore/<2 hex>/<sha1>`. The archive comes from outside, so before anything is restored:

- the central directory: at most `max_members` members; each name relative, without `..`,
  backslashes or control characters, not twice; `dump.sql`, `manifest.json` or under
  `filestore/`, nothing else; regular files and directories only (no links: a zip keeps the
  file's Unix mode); each filestore file at most `max_file_bytes` and all of them together at
  most `max_total_bytes`, as declared (reading never yields more than declared: zipfile stops at
  the declared size and checks the CRC);
- `manifest.json`: JSON, its Odoo version on the allow-list and the one the command named;
- `dump.sql`: read through as psql would read it (jobs/dump_check.py).

Only then is the dump run through psql as the tenant role in one transaction (a failure keeps
nothing) and the filestore unpacked beside the instance's and swapped in. A refusal is a
JobError `archive_invalid` naming the member and the reason: the Job fails at once, and the
import is rolled back.
"""

import contextlib
import io
import json
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from jobs.archive import (
    CHUNK,
    FILESTORE_NAME,
    JobError,
    check_filestore,
    check_psql,
    start_psql,
)
from jobs.dump_check import DumpChecker, DumpRefusedError, runnable

ARCHIVE_INVALID = "archive_invalid"
DUMP = "dump.sql"
MANIFEST = "manifest.json"
MANIFEST_LIMIT = 1024 * 1024
"""A manifest lists the modules and their versions: a few kilobytes."""


@dataclass(frozen=True)
class Limits:
    """Bounds of an archive (the service's settings, INSTANCE_SERVICE_IMPORTS__*)."""

    max_members: int
    max_file_bytes: int
    max_total_bytes: int
    versions: frozenset[str]
    """The Odoo versions the service runs (the allow-list)."""


def refused(member: str, reason: str) -> JobError:
    """The archive is refused because of `member`."""
    return JobError(ARCHIVE_INVALID, f"{member}: {reason}")


def _check_name(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename
    if not name or any(ord(c) < 32 or ord(c) == 127 for c in name) or "\\" in name:
        raise refused(repr(name), "a name with a backslash or a control character")
    path = PurePosixPath(name)
    if name.startswith("/") or path.is_absolute():
        raise refused(name, "an absolute path")
    if ".." in path.parts:
        raise refused(name, "a path that leaves the archive (..)")
    return path


def _check_kind(info: zipfile.ZipInfo) -> None:
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise refused(info.filename, "a symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise refused(info.filename, "not a regular file or directory")


def check_members(archive: zipfile.ZipFile, limits: Limits) -> list[zipfile.ZipInfo]:
    """The archive's filestore files, once its directory passed every check."""
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise refused(
            "the archive",
            f"{len(members)} members, more than the {limits.max_members} allowed "
            "(INSTANCE_SERVICE_IMPORTS__MAX_MEMBERS)",
        )
    seen: set[str] = set()
    files: list[zipfile.ZipInfo] = []
    total = 0
    for info in members:
        path = _check_name(info)
        _check_kind(info)
        normal = str(path)
        if normal in seen:
            raise refused(info.filename, "appears twice")
        seen.add(normal)
        if normal in (DUMP, MANIFEST):
            if info.is_dir():
                raise refused(info.filename, "a directory, not a file")
            continue
        if path.parts[0] != FILESTORE_NAME:
            raise refused(info.filename, f"outside {FILESTORE_NAME}/ (not {DUMP} or {MANIFEST})")
        if info.is_dir():
            continue
        if len(path.parts) < 2:
            raise refused(info.filename, f"a file where the {FILESTORE_NAME}/ directory belongs")
        if info.file_size > limits.max_file_bytes:
            raise refused(
                info.filename,
                f"expands to {info.file_size} bytes, more than {limits.max_file_bytes} "
                "(INSTANCE_SERVICE_IMPORTS__MAX_FILE_MIB)",
            )
        total += info.file_size
        files.append(info)
    if total > limits.max_total_bytes:
        raise refused(
            f"{FILESTORE_NAME}/",
            f"expands to {total} bytes, more than {limits.max_total_bytes} (the instance's "
            "storage, or INSTANCE_SERVICE_IMPORTS__MAX_TOTAL_MIB)",
        )
    for required in (DUMP, MANIFEST):
        if required not in seen:
            raise refused(required, "missing: not an Odoo database-manager backup")
    return files


def check_manifest(archive: zipfile.ZipFile, expected: str, limits: Limits) -> str:
    """The Odoo version the manifest states, if it is on the allow-list and `expected`."""
    info = archive.getinfo(MANIFEST)
    if info.file_size > MANIFEST_LIMIT:
        raise refused(MANIFEST, f"{info.file_size} bytes, more than {MANIFEST_LIMIT}")
    try:
        manifest = json.loads(archive.read(info))
    except (ValueError, zipfile.BadZipFile) as error:
        raise refused(MANIFEST, f"not JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise refused(MANIFEST, "not a JSON object")
    version = manifest.get("major_version") or manifest.get("version")
    if not isinstance(version, str):
        raise refused(MANIFEST, "states no Odoo version (major_version or version)")
    allowed = ", ".join(sorted(limits.versions))
    if version not in limits.versions:
        raise refused(MANIFEST, f"Odoo {version} is not on the allow-list ({allowed})")
    if version != expected:
        raise refused(MANIFEST, f"Odoo {version}, the import named Odoo {expected}")
    return version


@contextlib.contextmanager
def _lines(archive: zipfile.ZipFile) -> Iterator[IO[str]]:
    with (
        archive.open(DUMP) as raw,
        io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="") as text,
    ):
        yield text


def check_dump_member(archive: zipfile.ZipFile) -> None:
    """`dump.sql` holds nothing that escapes the tenant's database."""
    checker = DumpChecker()
    try:
        with _lines(archive) as lines:
            for line in lines:
                checker.feed(line)
        checker.finish()
    except DumpRefusedError as error:
        raise refused(DUMP, f"line {error.line}: {error.reason}") from None
    except UnicodeDecodeError as error:
        raise refused(DUMP, f"not UTF-8 ({error.reason} at byte {error.start})") from None
    except zipfile.BadZipFile as error:
        raise refused(DUMP, str(error)) from None


def check_archive(path: Path, expected_version: str, limits: Limits) -> list[zipfile.ZipInfo]:
    """Every check, in order; the filestore files to unpack."""
    try:
        with zipfile.ZipFile(path) as archive:
            files = check_members(archive, limits)
            check_manifest(archive, expected_version, limits)
            check_dump_member(archive)
    except zipfile.BadZipFile as error:
        raise refused("the archive", f"not a zip archive ({error})") from None
    return files


def _run_dump(archive: zipfile.ZipFile, database: str) -> None:
    """The checked dump through psql, as the tenant role, in one transaction."""
    with tempfile.TemporaryFile() as errors:
        psql = start_psql(database, errors)
        if psql.stdin is None:
            raise JobError("pg_restore_failed", "could not start psql")
        try:
            psql.stdin.write(b"BEGIN;\n")
            with _lines(archive) as lines:
                for line in runnable(lines):
                    psql.stdin.write(line.encode())
            psql.stdin.write(b"\nCOMMIT;\n")
        except BrokenPipeError:
            pass  # psql stopped at an error: reported below
        finally:
            with contextlib.suppress(BrokenPipeError):
                psql.stdin.close()
        check_psql(psql.wait(), errors)


def _unpack_filestore(archive: zipfile.ZipFile, files: list[zipfile.ZipInfo], work: Path) -> Path:
    """The filestore files into `work/filestore`, each no larger than declared."""
    target = work / FILESTORE_NAME
    target.mkdir()
    for info in files:
        relative = PurePosixPath(info.filename).relative_to(FILESTORE_NAME)
        destination = target.joinpath(*relative.parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source, destination.open("wb") as out:
            shutil.copyfileobj(source, out, CHUNK)
    return target


def import_archive(
    path: Path,
    expected_version: str,
    limits: Limits,
    database: str,
    filestore: Path,
    data_dir: Path,
) -> None:
    """Check the archive at `path`, then make it the tenant's database and filestore."""
    check_filestore(filestore, data_dir)
    files = check_archive(path, expected_version, limits)
    filestore.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="import-", dir=filestore.parent) as work,
        zipfile.ZipFile(path) as archive,
    ):
        unpacked = _unpack_filestore(archive, files, Path(work))
        _run_dump(archive, database)
        old = filestore.with_name(filestore.name + ".before-import")
        shutil.rmtree(old, ignore_errors=True)
        if filestore.exists():
            filestore.rename(old)
        unpacked.rename(filestore)
        shutil.rmtree(old, ignore_errors=True)
