"""Backup to and restore from object storage, streamed and sealed, as a data Job runs them.

A backup is one tar stream: the database dump (pg_dump's custom format) cut into members
`database.dump.part-000001`, ... of at most DUMP_PART bytes (a tar member's size goes in its
header, and pg_dump's output has no size until it ends), then `filestore/`. The stream is sealed
(objectstore/sealing.py, the object key as associated data) and uploaded in parts as it is made:
nothing is written to local disk, and nothing becomes an object until the upload completes.

A restore reads the object once: hashed, opened, its members checked one by one and unpacked into
a work directory beside the filestore; only when the whole object was read, its last segment
authenticated and its SHA-256 equal to the recorded one does anything change (the database in one
transaction, then the filestore swapped: jobs/archive.py).

The Job's settings come from its environment (the pod's, from the manifest): the endpoint and
region, the tenant's own scoped key (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and the keyset
(BACKUP_KEYSET), each from a Secret.
"""

import io
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from jobs.archive import (
    APPLICATION_BACKUP,
    FILESTORE_NAME,
    JobError,
    add_filestore,
    apply_restore,
    check_filestore,
    database_lost,
    last_line,
)
from jobs.importing import Limits, import_archive
from jobs.outages import client_environment, outage_in
from objectstore.client import StorageRefusedError, StorageUnavailableError, s3_client
from objectstore.locations import ObjectLocation
from objectstore.sealing import KeysetError, OpeningError, Sealer
from objectstore.transfer import Download, Upload

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DUMP_PART = 16 * 1024 * 1024
DUMP_MEMBER = "database.dump.part-"
STORAGE_UNAVAILABLE = "storage_unavailable"
"""The report's `error_code` when the object storage did not answer (the Job runs again)."""


@dataclass(frozen=True)
class ObjectTarget:
    """Where a Job's object is and how it reaches it."""

    location: ObjectLocation
    endpoint_url: str | None
    region: str
    addressing_style: str
    access_key_id: str
    secret_access_key: str
    keyset: str
    part_size_mib: int = 16

    @classmethod
    def from_environment(cls, uri: str, part_size_mib: int) -> "ObjectTarget":
        """The target named by `uri`, reached as the pod's environment says."""
        location = ObjectLocation.parse(uri)
        if location is None:
            raise JobError("bad_arguments", f"not an s3:// location: {uri}")
        missing = [
            name
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "BACKUP_KEYSET")
            if not os.environ.get(name)
        ]
        if missing:
            raise JobError("bad_arguments", f"the Job's environment lacks {', '.join(missing)}")
        return cls(
            location=location,
            endpoint_url=os.environ.get("BACKUP_S3_ENDPOINT") or None,
            region=os.environ.get("BACKUP_S3_REGION", "us-east-1"),
            addressing_style=os.environ.get("BACKUP_S3_ADDRESSING", "path"),
            access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            keyset=os.environ["BACKUP_KEYSET"],
            part_size_mib=part_size_mib,
        )

    def client(self) -> "S3Client":
        """An S3 client with the tenant's key."""
        return s3_client(
            self.endpoint_url,
            self.region,
            self.access_key_id,
            self.secret_access_key,
            self.addressing_style,
        )

    def sealer(self) -> Sealer:
        """The keyset's sealer; a JobError when the keyset is unusable."""
        try:
            return Sealer(self.keyset)
        except KeysetError as error:
            raise JobError("keyset_invalid", str(error)) from None


@dataclass(frozen=True)
class Stored:
    """A finished backup object."""

    location: ObjectLocation
    size_bytes: int
    sha256: str


def storage_failure(error: StorageUnavailableError | StorageRefusedError) -> JobError:
    """A storage failure as the Job reports it: unavailable runs again, refused does not."""
    if isinstance(error, StorageUnavailableError):
        return JobError(STORAGE_UNAVAILABLE, str(error), retry=True)
    if error.code in ("NoSuchKey", "404", "NotFound"):
        return JobError("backup_missing", str(error))
    return JobError("storage_refused", str(error))


def _read_up_to(stream: IO[bytes], size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _add_dump(tar: tarfile.TarFile, database: str, errors: IO[bytes]) -> None:
    """pg_dump's output as numbered members; a failed dump raises (the upload is abandoned)."""
    dump = subprocess.Popen(
        ["pg_dump", "--format=custom", "--no-owner", database],
        stdout=subprocess.PIPE,
        stderr=errors,
        env=client_environment(APPLICATION_BACKUP),
    )
    if dump.stdout is None:
        raise JobError("pg_dump_failed", "could not read pg_dump's output")
    number = 0
    try:
        while chunk := _read_up_to(dump.stdout, DUMP_PART):
            number += 1
            member = tarfile.TarInfo(f"{DUMP_MEMBER}{number:06d}")
            member.size, member.mode = len(chunk), 0o600
            tar.addfile(member, io.BytesIO(chunk))
    finally:
        dump.stdout.close()
        status = dump.wait()
    if status != 0:
        errors.seek(0)
        lost = outage_in(errors.read().decode(errors="replace"))
        if lost is not None:
            raise database_lost("pg_dump", status, lost)
        raise JobError("pg_dump_failed", f"pg_dump exited with {status}: {last_line(errors)}")
    if number == 0:
        raise JobError("pg_dump_failed", "pg_dump wrote nothing")


def backup_to_object(
    database: str, filestore: Path, target: ObjectTarget, data_dir: Path | None = None
) -> Stored:
    """Dump `database`, pack it with `filestore`, seal and upload it as the target object."""
    check_filestore(filestore, data_dir or filestore.parent.parent)
    sealer, location = target.sealer(), target.location
    client = target.client()
    upload = Upload(client, location, target.part_size_mib)
    try:
        with tempfile.TemporaryFile() as errors, upload:
            with (
                sealer.sealing(upload, location.key) as sealed,  # type: ignore[arg-type]
                tarfile.open(fileobj=sealed, mode="w|") as tar,
            ):
                _add_dump(tar, database, errors)
                add_filestore(tar, filestore)
            checksum = upload.complete()
            size = upload.size
    except (StorageUnavailableError, StorageRefusedError) as error:
        raise storage_failure(error) from None
    except Exception:
        # The sealing stream's native code hands a failure of the storage on as its own error.
        if isinstance(upload.failure, StorageUnavailableError | StorageRefusedError):
            raise storage_failure(upload.failure) from None
        raise
    return Stored(location, size, checksum)


def _check_member(member: tarfile.TarInfo, expected_part: int, uri: str) -> None:
    name = Path(member.name)
    if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
        raise JobError("backup_invalid", f"{uri} holds an unexpected entry {member.name!r}")
    if member.name.startswith(DUMP_MEMBER):
        if member.name != f"{DUMP_MEMBER}{expected_part:06d}" or not member.isfile():
            raise JobError("backup_invalid", f"{uri}: dump part {member.name!r} out of order")
        return
    if name.parts[0] != FILESTORE_NAME:
        raise JobError("backup_invalid", f"{uri} holds an unexpected entry {member.name!r}")


def _unpack(opened: IO[bytes], work: Path, uri: str) -> None:
    """Members into `work`: the dump parts joined into `database.dump`, the filestore as is."""
    parts = 0
    dump = work / "database.dump"
    with dump.open("wb") as joined, tarfile.open(fileobj=opened, mode="r|") as tar:
        for member in tar:
            _check_member(member, parts + 1, uri)
            if member.name.startswith(DUMP_MEMBER):
                parts += 1
                extracted = tar.extractfile(member)
                if extracted is None:
                    raise JobError("backup_invalid", f"{uri}: {member.name} cannot be read")
                while chunk := extracted.read(1024 * 1024):
                    joined.write(chunk)
            else:
                tar.extract(member, work, filter="data")
    if parts == 0:
        raise JobError("backup_invalid", f"{uri} holds no database dump")
    # tar stops at its end marker; what follows (padding, the last sealed segment) is read too,
    # so the whole object is authenticated and hashed.
    while opened.read(1024 * 1024):
        pass


def restore_from_object(
    target: ObjectTarget,
    expected_sha256: str,
    database: str,
    filestore: Path,
    data_dir: Path | None = None,
    *,
    sealed_as: str | None = None,
    finish: str = "",
) -> None:
    """Download, open and check the object, then bring `database` and `filestore` back to it.

    `sealed_as`: the key the object was sealed under, when it was copied to another (a clone
    reads a copy of its source's backup; the key is the seal's associated data). `finish`: SQL
    run last in the restore's transaction (a clone's neutralization)."""
    check_filestore(filestore, data_dir or filestore.parent.parent)
    sealer, location = target.sealer(), target.location
    client = target.client()
    filestore.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="restore-", dir=filestore.parent) as work:
        try:
            with Download(client, location) as download:
                opened = io.BufferedReader(
                    sealer.opening(download, sealed_as or location.key)  # type: ignore[arg-type]
                )
                try:
                    _unpack(opened, Path(work), location.uri)
                except tarfile.TarError as error:
                    raise JobError("backup_invalid", f"{location.uri}: {error}") from None
                actual = download.sha256
        except (StorageUnavailableError, StorageRefusedError) as error:
            raise storage_failure(error) from None
        except OpeningError as error:
            raise JobError("backup_invalid", f"{location.uri}: {error}") from None
        if actual != expected_sha256:
            raise JobError(
                "checksum_mismatch",
                f"{location.uri} has SHA-256 {actual}, the backup recorded {expected_sha256}: "
                "not restored",
            )
        apply_restore(Path(work), database, filestore, finish)


def import_from_object(
    target: ObjectTarget,
    expected_version: str,
    limits: Limits,
    database: str,
    filestore: Path,
    data_dir: Path | None = None,
) -> None:
    """Download the customer's archive (copied into the instance's prefix) beside the
    filestore, then check and import it (jobs/importing.py)."""
    data_dir = data_dir or filestore.parent.parent
    check_filestore(filestore, data_dir)
    location = target.location
    client = target.client()
    filestore.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="download-", dir=filestore.parent) as work:
        path = Path(work) / "archive.zip"
        try:
            with Download(client, location) as download, path.open("wb") as out:
                while chunk := download.read(1024 * 1024):
                    out.write(chunk)
        except (StorageUnavailableError, StorageRefusedError) as error:
            raise storage_failure(error) from None
        import_archive(path, expected_version, limits, database, filestore, data_dir)
