"""Where a backup's object lives, and how its key is made from the instance and backup ids."""

from dataclasses import dataclass

SCHEME = "s3://"
SUFFIX = ".tar.tink"
"""A tar archive, sealed by Tink's streaming AEAD (objectstore/sealing.py)."""


@dataclass(frozen=True)
class ObjectLocation:
    """An object in a bucket."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        """`s3://bucket/key`, as the store keeps it."""
        return f"{SCHEME}{self.bucket}/{self.key}"

    @classmethod
    def parse(cls, uri: str) -> "ObjectLocation | None":
        """The location an `s3://` URI names; None for anything else (a volume path)."""
        if not uri.startswith(SCHEME):
            return None
        bucket, _, key = uri[len(SCHEME) :].partition("/")
        if not bucket or not key:
            raise ValueError(f"not an object location: {uri!r}")
        return cls(bucket, key)


def instance_prefix(prefix: str, instance_id: str) -> str:
    """Every key of one instance starts with this (its Jobs may touch nothing else)."""
    return f"{prefix}/{instance_id}/"


def backup_location(bucket: str, prefix: str, instance_id: str, backup_id: str) -> ObjectLocation:
    """`<prefix>/<instance_id>/<backup_id>.tar.tink` in `bucket`."""
    return ObjectLocation(bucket, f"{instance_prefix(prefix, instance_id)}{backup_id}{SUFFIX}")


INCOMING = "incoming"


def incoming_location(bucket: str, prefix: str, instance_id: str, name: str) -> ObjectLocation:
    """`<prefix>/<instance_id>/incoming/<name>`: an object copied in for the instance's next
    data Job to read with its own key (a clone's backup of its source, an import's archive),
    removed once the Job is done."""
    return ObjectLocation(bucket, f"{instance_prefix(prefix, instance_id)}{INCOMING}/{name}")
