"""S3 and IAM clients from settings, and the two kinds of failure the rest of the code tells apart.

boto3 retries what its standard mode calls transient (throttling, 5xx, lost connections) a few
times itself; what is left after that is `StorageUnavailableError` (the server is away: try again
later) or `StorageRefusedError` (it answered no: another attempt would get the same answer).
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from botocore.config import Config
    from botocore.exceptions import ClientError
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_s3 import S3Client

# boto3 and botocore are imported where first used: a consumer start that never touches object
# storage does not pay for them (tests/unit/test_cold_imports.py).

T = TypeVar("T")

UNAVAILABLE_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "503", "500"}
)


class StorageUnavailableError(Exception):
    """The object storage did not answer, or answered that it cannot for now."""


class StorageRefusedError(Exception):
    """The object storage answered no (denied, missing, invalid): the same request fails again."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _config(addressing_style: str) -> "Config":
    from botocore.config import Config

    return Config(
        s3={"addressing_style": addressing_style},  # type: ignore[arg-type]
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=60,
        # What the client asks of the server stays within what every S3 server takes.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


def s3_client(
    endpoint_url: str | None,
    region: str,
    access_key_id: str,
    secret_access_key: str,
    addressing_style: str = "path",
) -> "S3Client":
    """An S3 client with these credentials (never taken from the ambient environment)."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=region,
    )
    return session.client("s3", endpoint_url=endpoint_url, config=_config(addressing_style))


def iam_client(
    endpoint_url: str | None, region: str, access_key_id: str, secret_access_key: str
) -> "IAMClient":
    """An IAM client (S3-compatible servers such as SeaweedFS answer it on the S3 endpoint)."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=region,
    )
    return session.client("iam", endpoint_url=endpoint_url, config=_config("path"))


def error_code(error: "ClientError") -> str:
    """The S3 error code of an answer."""
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


def classify(error: Exception, what: str) -> Exception:
    """`error` as StorageUnavailableError or StorageRefusedError (anything else unchanged)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        ReadTimeoutError,
        ResponseStreamingError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(error, ClientError):
        code = error_code(error)
        if code in UNAVAILABLE_CODES:
            return StorageUnavailableError(f"{what}: the object storage answered {code}")
        message = error.response.get("Error", {}).get("Message", "")
        return StorageRefusedError(code, f"{what}: the object storage refused ({code}: {message})")
    if isinstance(
        error,
        EndpointConnectionError | BotoConnectionError | ReadTimeoutError | ResponseStreamingError,
    ):
        return StorageUnavailableError(f"{what}: the object storage cannot be reached ({error})")
    if isinstance(error, BotoCoreError | ConnectionError | TimeoutError):
        return StorageUnavailableError(f"{what}: {error}")
    return error


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Raise botocore's failures inside as StorageUnavailableError or StorageRefusedError."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError, ConnectionError, TimeoutError) as error:
        raise classify(error, what) from error


def call(what: str, request: Callable[[], T]) -> T:
    """`request()` with its failures classified."""
    with storage_errors(what):
        return request()
