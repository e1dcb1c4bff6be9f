"""The one table that maps Kubernetes API failures to the two kinds of failure.

409 (conflict), 429 (throttled), 5xx and connection errors may pass: retry. 400, 401, 403, 404
and 422 will not: the command fails with a message naming the object and the API's reason. A
404 while deleting is success: the object is already gone.
"""

import json
from dataclasses import dataclass

import urllib3.exceptions
from kubernetes.client import ApiException

from messages.errors import PermanentError, RetryableError

RETRYABLE = frozenset({409, 429, 500, 502, 503, 504})
PERMANENT_CODES = {
    400: "kubernetes_bad_request",
    401: "kubernetes_unauthorized",
    403: "kubernetes_forbidden",
    404: "kubernetes_not_found",
    422: "kubernetes_invalid",
}


@dataclass(frozen=True)
class Target:
    """What a request was about, for messages: verb, kind, namespace/name."""

    verb: str
    kind: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.verb} {self.kind} {where}"


def _api_message(error: ApiException, target: Target) -> str:
    if target.kind == "Secret":
        return str(error.reason)  # a validation message could quote a secret value
    try:
        body = json.loads(error.body or "{}")
    except (TypeError, ValueError):
        return str(error.reason)
    return str(body.get("message") or error.reason)


def classify(
    error: Exception, target: Target, *, deleting: bool = False
) -> RetryableError | PermanentError | None:
    """The failure kind of an API error; None when it means success (404 on delete)."""
    if isinstance(error, ApiException):
        status = int(error.status or 0)
        if status == 404 and deleting:
            return None
        message = f"{target}: {status} {_api_message(error, target)}"
        if status in RETRYABLE:
            retry_after = (error.headers or {}).get("Retry-After")
            delay = float(retry_after) if retry_after and retry_after.isdigit() else None
            return RetryableError(message, delay=delay)
        return PermanentError(PERMANENT_CODES.get(status, f"kubernetes_{status}"), message)
    if isinstance(error, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
        return RetryableError(f"{target}: the API server did not answer ({error})")
    raise TypeError(f"not a Kubernetes API failure: {error!r}") from error
