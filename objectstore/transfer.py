"""Streaming one object up (multipart, hashed as it goes) and down (hashed as it is read).

An upload becomes an object only when the server completes it: a process killed, a server
restarted, or a failure anywhere before `complete` leaves at most an unfinished multipart upload,
which no listing or GET shows as an object, and which `abort` (or the service, afterwards:
objectstore/storage.py) removes. Nothing is written to local disk: parts are held in memory,
one at a time.

The SHA-256 is of the object's bytes (the sealed archive), so anyone holding the object can
check it without the key. Multipart metadata is fixed when the upload starts, so the checksum
goes on the finished object as its tag `sha256`.
"""

import contextlib
import hashlib
import io
from types import TracebackType
from typing import TYPE_CHECKING, Any

from objectstore.client import call, classify
from objectstore.locations import ObjectLocation

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024
CHECKSUM_TAG = "sha256"


class Upload(io.RawIOBase):
    """A writable stream that becomes one object on `complete()`, never before."""

    def __init__(self, client: "S3Client", location: ObjectLocation, part_size_mib: int) -> None:
        self._client = client
        self._location = location
        self._part_size = part_size_mib * MIB
        self._buffer = bytearray()
        self._digest = hashlib.sha256()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self.size = 0
        self.failure: Exception | None = None
        """The storage failure that stopped the upload: a writer between (the sealing stream's
        native code) may hand it on as an error of its own."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._digest.update(view)
        self._buffer += view
        self.size += len(view)
        while len(self._buffer) >= self._part_size:
            try:
                self._send(bytes(self._buffer[: self._part_size]))
            except Exception as error:
                self.failure = error
                raise
            del self._buffer[: self._part_size]
        return len(view)

    def _start(self) -> str:
        if self._upload_id is None:
            location = self._location
            started = call(
                f"start of the upload of {location.uri}",
                lambda: self._client.create_multipart_upload(
                    Bucket=location.bucket, Key=location.key
                ),
            )
            self._upload_id = started["UploadId"]
        return self._upload_id

    def _send(self, part: bytes) -> None:
        upload_id = self._start()
        number = len(self._parts) + 1
        location = self._location
        sent = call(
            f"part {number} of {location.uri}",
            lambda: self._client.upload_part(
                Bucket=location.bucket,
                Key=location.key,
                UploadId=upload_id,
                PartNumber=number,
                Body=part,
            ),
        )
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    @property
    def sha256(self) -> str:
        """The checksum of everything written so far."""
        return self._digest.hexdigest()

    def complete(self) -> str:
        """Send the last part, make the object, tag it with its checksum; the checksum."""
        if self._buffer or not self._parts:
            self._send(bytes(self._buffer))
            self._buffer.clear()
        location, upload_id = self._location, self._start()
        call(
            f"completion of {location.uri}",
            lambda: self._client.complete_multipart_upload(
                Bucket=location.bucket,
                Key=location.key,
                UploadId=upload_id,
                MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
            ),
        )
        self._upload_id = None
        checksum = self.sha256
        call(
            f"tagging of {location.uri}",
            lambda: self._client.put_object_tagging(
                Bucket=location.bucket,
                Key=location.key,
                Tagging={"TagSet": [{"Key": CHECKSUM_TAG, "Value": checksum}]},
            ),
        )
        return checksum

    def abort(self) -> None:
        """Drop the unfinished upload, if the server can be told; never raises."""
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        # Whatever stopped the upload may stop this too: the service aborts what is left over.
        with contextlib.suppress(Exception):
            self._client.abort_multipart_upload(
                Bucket=self._location.bucket, Key=self._location.key, UploadId=upload_id
            )

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if error is not None:
            self.abort()
        super().__exit__(kind, error, trace)


class Download(io.RawIOBase):
    """A readable stream of one object's bytes, hashed as they are read."""

    def __init__(self, client: "S3Client", location: ObjectLocation) -> None:
        got = call(
            f"download of {location.uri}",
            lambda: client.get_object(Bucket=location.bucket, Key=location.key),
        )
        self._body = got["Body"]
        self._location = location
        self._digest = hashlib.sha256()
        self.size = int(got.get("ContentLength", 0))
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "memoryview | bytearray") -> int:  # type: ignore[override]
        try:
            data = self._body.read(len(buffer))
        except Exception as error:
            classified = classify(error, f"download of {self._location.uri}")
            if classified is error:
                raise
            raise classified from error
        size = len(data)
        buffer[:size] = data
        self._digest.update(data)
        self.read_bytes += size
        return size

    @property
    def sha256(self) -> str:
        """The checksum of everything read so far."""
        return self._digest.hexdigest()

    def close(self) -> None:
        self._body.close()
        super().close()
