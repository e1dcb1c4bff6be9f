"""The import Job's checks of a customer's zip, before anything of it is used: each refusal
names the member and the reason (`archive_invalid`)."""

import io
import json
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import pytest

from jobs.archive import JobError
from jobs.importing import Limits, check_archive

LIMITS = Limits(
    max_members=50,
    max_file_bytes=1024 * 1024,
    max_total_bytes=3 * 1024 * 1024,
    versions=frozenset({"16.0", "17.0", "18.0"}),
)
DUMP = b"SET standard_conforming_strings = on;\nCREATE TABLE public.t (a int);\n"
MANIFEST = json.dumps({"version": "17.0", "major_version": "17.0"}).encode()

Member = tuple[str | zipfile.ZipInfo, bytes]


def _zip(tmp_path: Path, members: Sequence[Member]) -> Path:
    path = tmp_path / "archive.zip"
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # a name written twice, on purpose
        for name, content in members:
            archive.writestr(name, content)
    return path


def _with(*extra: Member, dump: bytes = DUMP, manifest: bytes = MANIFEST) -> list[Member]:
    return [("dump.sql", dump), ("manifest.json", manifest), *extra]


def _link(name: str) -> Member:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16
    return info, b"/etc/shadow"


def _fifo(name: str) -> Member:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o010644 << 16
    return info, b""


def test_an_odoo_backup_passes_and_its_filestore_files_are_listed(tmp_path: Path) -> None:
    members = _with(
        ("filestore/", b""), ("filestore/3f/3f78", b"logo"), ("filestore/ab/ab12", b"x")
    )
    files = check_archive(_zip(tmp_path, members), "17.0", LIMITS)
    assert [info.filename for info in files] == ["filestore/3f/3f78", "filestore/ab/ab12"]


@pytest.mark.parametrize(
    ("members", "refusal"),
    [
        (_with(("filestore/../../x", b"")), "filestore/../../x: a path that leaves the archive"),
        (_with(("/etc/passwd", b"")), "/etc/passwd: an absolute path"),
        (_with(("filestore\\ab\\x", b"")), "a backslash or a control character"),
        (_with(_link("filestore/ab/link")), "filestore/ab/link: a symbolic link"),
        (_with(_fifo("filestore/ab/fifo")), "not a regular file or directory"),
        (_with(("odoo.conf", b"")), "odoo.conf: outside filestore/"),
        (_with(("filestore", b"x")), "filestore: a file where the filestore/ directory belongs"),
        (_with(("dump.sql", b"")), "dump.sql: appears twice"),
        ([("manifest.json", MANIFEST)], "dump.sql: missing"),
        ([("dump.sql", DUMP)], "manifest.json: missing"),
        (_with(*((f"filestore/{n}", b"") for n in range(49))), "51 members, more than the 50"),
        (_with(("filestore/00/big", bytes(1024 * 1024 + 1))), "filestore/00/big: expands to"),
        (
            _with(*((f"filestore/0{n}/f", bytes(1024 * 1024)) for n in range(4))),
            "filestore/: expands to 4194304 bytes",
        ),
        (_with(manifest=b"{not json"), "manifest.json: not JSON"),
        (_with(manifest=b"[]"), "manifest.json: not a JSON object"),
        (_with(manifest=b"{}"), "manifest.json: states no Odoo version"),
        (
            _with(manifest=json.dumps({"version": "12.0"}).encode()),
            "manifest.json: Odoo 12.0 is not on the allow-list (16.0, 17.0, 18.0)",
        ),
        (
            _with(manifest=json.dumps({"major_version": "18.0"}).encode()),
            "manifest.json: Odoo 18.0, the import named Odoo 17.0",
        ),
        (_with(dump=DUMP + b"ALTER ROLE x SUPERUSER;\n"), "dump.sql: line 3: changes roles"),
        (_with(dump=b"\\connect postgres\n"), "dump.sql: line 1: psql meta-command \\connect"),
        (_with(dump=b"SELECT '\xff';\n"), "dump.sql: not UTF-8"),
    ],
)
def test_a_hostile_or_broken_archive_is_refused_naming_the_member(
    tmp_path: Path, members: list[Member], refusal: str
) -> None:
    with pytest.raises(JobError) as refused:
        check_archive(_zip(tmp_path, members), "17.0", LIMITS)
    assert refused.value.code == "archive_invalid"
    assert refusal in str(refused.value)


def test_what_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "archive.zip"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(JobError, match="the archive: not a zip archive"):
        check_archive(path, "17.0", LIMITS)


def test_a_member_that_holds_more_than_its_header_declares_is_not_read_past_it(
    tmp_path: Path,
) -> None:
    # A header that lies about the size: reading stops at the declared size, and the CRC check
    # refuses the member, so no more than declared is ever written.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("filestore/00/small", bytes(1024 * 1024))
    data = bytearray(buffer.getvalue())
    for offset in (data.find(b"PK\x03\x04") + 22, data.find(b"PK\x01\x02") + 24):
        data[offset : offset + 4] = (16).to_bytes(4, "little")  # uncompressed size: 16 bytes
    path = tmp_path / "archive.zip"
    path.write_bytes(bytes(data))
    read = bytearray()

    def read_all(member: IO[bytes]) -> None:
        while chunk := member.read(4):
            read.extend(chunk)

    with (
        zipfile.ZipFile(path) as archive,
        archive.open("filestore/00/small") as member,
        pytest.raises(zipfile.BadZipFile, match="Bad CRC-32"),
    ):
        read_all(member)
    assert len(read) <= 16
