"""The one table of Kubernetes API failures: which retry, which are final, which mean success."""

import json

import pytest
import urllib3.exceptions
from kubernetes.client import ApiException

from k8s.errors import Target, classify
from messages.errors import PermanentError, RetryableError

DEPLOYMENT = Target("patch", "Deployment", "odoo-x", "tenants")


def _api(status: int, message: str = "nope", headers: dict[str, str] | None = None) -> ApiException:
    error = ApiException(status=status, reason="Reason")
    error.body = json.dumps({"message": message})
    error.headers = headers
    return error


@pytest.mark.parametrize("status", [409, 429, 500, 502, 503, 504])
def test_passing_failures_retry(status: int) -> None:
    outcome = classify(_api(status), DEPLOYMENT)
    assert isinstance(outcome, RetryableError)
    assert str(outcome).startswith(f"patch Deployment tenants/odoo-x: {status} nope")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "kubernetes_bad_request"),
        (401, "kubernetes_unauthorized"),
        (403, "kubernetes_forbidden"),
        (404, "kubernetes_not_found"),
        (422, "kubernetes_invalid"),
        (418, "kubernetes_418"),
    ],
)
def test_lasting_failures_are_permanent(status: int, code: str) -> None:
    outcome = classify(_api(status), DEPLOYMENT)
    assert isinstance(outcome, PermanentError)
    assert outcome.code == code


def test_not_found_while_deleting_is_success() -> None:
    assert classify(_api(404), DEPLOYMENT, deleting=True) is None
    assert isinstance(classify(_api(409), DEPLOYMENT, deleting=True), RetryableError)


def test_throttling_keeps_the_servers_pace() -> None:
    outcome = classify(_api(429, headers={"Retry-After": "7"}), DEPLOYMENT)
    assert isinstance(outcome, RetryableError)
    assert outcome.delay == 7.0


@pytest.mark.parametrize(
    "error",
    [
        urllib3.exceptions.MaxRetryError(None, "/apis", reason=None),  # type: ignore[arg-type]
        urllib3.exceptions.ProtocolError("reset"),
        ConnectionRefusedError("refused"),
        TimeoutError("slow"),
    ],
)
def test_an_api_server_that_does_not_answer_is_retried(error: Exception) -> None:
    assert isinstance(classify(error, DEPLOYMENT), RetryableError)


def test_secret_errors_never_quote_the_body() -> None:
    secret = Target("apply", "Secret", "odoo-x-credentials", "tenants")
    outcome = classify(_api(422, message="Invalid value: 'hunter2'"), secret)
    assert "hunter2" not in str(outcome)


def test_other_exceptions_are_not_mistaken_for_api_failures() -> None:
    with pytest.raises(TypeError):
        classify(ValueError("a bug"), DEPLOYMENT)
