"""The Odoo stand-in's verdict for the pods at an address (pod objects built in the test)."""

from types import SimpleNamespace
from typing import Any

import pytest

from devstack.standin import verdict


def _pod(*, managed: bool = True, ready: bool = True, fail: bool = False, port: int = 8069) -> Any:
    labels = {"app.kubernetes.io/managed-by": "instance-service"} if managed else {}
    if fail:
        labels["devstack.local/health"] = "fail"
    return SimpleNamespace(
        metadata=SimpleNamespace(labels=labels),
        spec=SimpleNamespace(
            containers=[SimpleNamespace(ports=[SimpleNamespace(container_port=port)])]
        ),
        status=SimpleNamespace(
            conditions=[SimpleNamespace(type="Ready", status="True" if ready else "False")]
        ),
    )


@pytest.mark.parametrize(
    ("pods", "port", "status"),
    [
        ([_pod()], 8069, 200),
        ([_pod(fail=True)], 8069, 500),
        ([_pod(ready=False)], 8069, 503),
        ([_pod()], 9069, 502),
        ([_pod(managed=False)], 8069, 404),
        ([], 8069, 404),
    ],
)
def test_verdicts(pods: list[Any], port: int, status: int) -> None:
    code, body = verdict(pods, port)
    assert code == status
    assert body["status"] == ("pass" if status == 200 else "fail")
