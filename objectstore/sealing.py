"""Sealing archives before they leave the cluster: Tink's streaming AEAD, keys in a keyset.

Every backup is encrypted and authenticated as it streams (AES256-GCM-HKDF, 1 MiB segments),
with the object's key as associated data, so an object copied or renamed to another backup's
key does not open, and a truncated one fails its last segment. The keyset is Tink's JSON form:
one primary key seals, every key in it opens. Rotation adds a new primary key and keeps the old
ones for as long as backups sealed with them are retained (docs/data-operations.md).
"""

import contextlib
import io
from collections.abc import Iterator
from typing import BinaryIO

import tink
from google.protobuf import json_format
from tink import secret_key_access, streaming_aead
from tink.proto import tink_pb2

streaming_aead.register()

TEMPLATE = streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB


class KeysetError(Exception):
    """The keyset cannot be read or used."""


class OpeningError(Exception):
    """The sealed stream does not open with the keyset: tampered, truncated or another key's."""


def new_keyset() -> str:
    """A keyset with one fresh key, as JSON."""
    handle = tink.new_keyset_handle(TEMPLATE)
    serialized: str = tink.json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN)
    return serialized


def _proto(keyset: str) -> tink_pb2.Keyset:
    try:
        return json_format.Parse(keyset, tink_pb2.Keyset())
    except json_format.ParseError as error:
        raise KeysetError(f"not a Tink JSON keyset: {error}") from None


def rotate(keyset: str) -> str:
    """The keyset with a new primary key added; every older key still opens what it sealed."""
    old = _proto(keyset)
    new = _proto(new_keyset())
    taken = {key.key_id for key in old.key}
    if new.primary_key_id in taken:  # 1 in 4 billion: try again
        return rotate(keyset)
    old.key.extend(new.key)
    old.primary_key_id = new.primary_key_id
    rotated = json_format.MessageToJson(old)
    _handle(rotated)  # a keyset Tink accepts, or an error now
    return rotated


def key_ids(keyset: str) -> tuple[int, tuple[int, ...]]:
    """The primary key's id and every key's id (for the CLI to show, never the key material)."""
    proto = _proto(keyset)
    return proto.primary_key_id, tuple(key.key_id for key in proto.key)


def _handle(keyset: str) -> tink.KeysetHandle:
    try:
        return tink.json_proto_keyset_format.parse(keyset, secret_key_access.TOKEN)
    except tink.TinkError as error:
        raise KeysetError(f"the keyset is not usable: {error}") from None


class Sealer:
    """Seals and opens streams with one keyset."""

    def __init__(self, keyset: str) -> None:
        try:
            self._primitive = _handle(keyset).primitive(streaming_aead.StreamingAead)
        except tink.TinkError as error:
            raise KeysetError(f"the keyset holds no streaming AEAD key: {error}") from None

    @contextlib.contextmanager
    def sealing(self, destination: BinaryIO, associated: str) -> Iterator[BinaryIO]:
        """A stream whose writes reach `destination` sealed; closing it writes the last segment."""
        stream = self._primitive.new_encrypting_stream(destination, associated.encode())
        with stream:
            yield stream

    def opening(self, source: BinaryIO, associated: str) -> io.RawIOBase:
        """A stream of what `source` holds, opened; reads raise OpeningError where it fails."""
        return _Opened(self._primitive.new_decrypting_stream(source, associated.encode()))


class _Opened(io.RawIOBase):
    """Tink's decrypting stream, with its authentication failures as OpeningError."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "memoryview | bytearray") -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(buffer))
        except tink.TinkError as error:
            raise OpeningError(
                f"the archive does not open with the keyset (tampered, truncated, or sealed "
                f"with a key not in it): {error}"
            ) from None
        size = len(data)
        buffer[:size] = data
        return size
