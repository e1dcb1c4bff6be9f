"""The service's own view of the backup bucket: check an object, remove pruned ones, and clear
away the unfinished uploads an interrupted Job left."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from objectstore.client import StorageRefusedError, call
from objectstore.locations import ObjectLocation
from objectstore.transfer import CHECKSUM_TAG

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DELETE_BATCH = 1000
"""Keys per DeleteObjects request (S3's limit)."""


@dataclass(frozen=True)
class StoredObject:
    """What the server says of one object."""

    size_bytes: int
    sha256: str | None
    """Its `sha256` tag (None: untagged, e.g. the Job stopped between completion and tagging)."""


class BackupStorage:
    """Objects of the backup bucket, with the service's credentials."""

    def __init__(self, client: "S3Client", bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (the local stack's; production's is made by the
        operator, deploy/README.md)."""
        try:
            call(f"bucket {self.bucket}", lambda: self._client.head_bucket(Bucket=self.bucket))
        except StorageRefusedError:
            call(
                f"creation of bucket {self.bucket}",
                lambda: self._client.create_bucket(Bucket=self.bucket),
            )

    def size(self, location: ObjectLocation) -> int | None:
        """The object's size, or None when it does not exist."""
        try:
            head = call(
                f"object {location.uri}",
                lambda: self._client.head_object(Bucket=location.bucket, Key=location.key),
            )
        except StorageRefusedError as refused:
            if refused.code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head.get("ContentLength", 0))

    def describe(self, location: ObjectLocation) -> StoredObject | None:
        """The object's size and checksum tag, or None when it does not exist."""
        size = self.size(location)
        if size is None:
            return None
        tags = call(
            f"tags of {location.uri}",
            lambda: self._client.get_object_tagging(Bucket=location.bucket, Key=location.key),
        )
        found = {tag["Key"]: tag["Value"] for tag in tags.get("TagSet", [])}
        return StoredObject(size, found.get(CHECKSUM_TAG))

    def copy(self, source: ObjectLocation, target: ObjectLocation) -> None:
        """Copy an object on the server (in parts when it is large), its bytes unchanged."""
        call(
            f"copy of {source.uri} to {target.uri}",
            lambda: self._client.copy(
                {"Bucket": source.bucket, "Key": source.key}, target.bucket, target.key
            ),
        )

    def remove(self, locations: list[ObjectLocation]) -> None:
        """Delete the objects (absent ones are fine)."""
        keys = [location.key for location in locations if location.bucket == self.bucket]
        others = [location for location in locations if location.bucket != self.bucket]
        for location in others:  # a backup recorded under an earlier bucket setting
            call(
                f"removal of {location.uri}",
                lambda location=location: self._client.delete_object(  # type: ignore[misc]
                    Bucket=location.bucket, Key=location.key
                ),
            )
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            answer = call(
                f"removal of {len(batch)} objects from {self.bucket}",
                lambda batch=batch: self._client.delete_objects(  # type: ignore[misc]
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                ),
            )
            failed = [
                f"{error.get('Key')}: {error.get('Code')}" for error in answer.get("Errors", [])
            ]
            if failed:
                raise StorageRefusedError("DeleteFailed", f"not removed: {'; '.join(failed[:5])}")

    def abort_uploads(self, prefix: str) -> int:
        """Abort every unfinished multipart upload of keys starting with `prefix`; how many."""
        listed = call(
            f"unfinished uploads under {prefix}",
            lambda: self._client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix),
        )
        aborted = 0
        for upload in listed.get("Uploads", []):
            key, upload_id = upload.get("Key", ""), upload.get("UploadId", "")
            if not key.startswith(prefix):
                continue
            try:
                call(
                    f"abort of the upload of {key}",
                    lambda key=key, upload_id=upload_id: self._client.abort_multipart_upload(  # type: ignore[misc]
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    ),
                )
            except StorageRefusedError as refused:
                if refused.code != "NoSuchUpload":
                    raise
                continue
            aborted += 1
        return aborted
