"""Access to the local stack for tests: availability checks and per-test isolated resources.

A test that needs a service the stack does not provide fails under CI=true (CI starts the
stack, so an absent service is a defect) and is skipped with a one-line reason otherwise.
"""

import base64
import functools
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from kubernetes import client, config
from psycopg import sql

from devstack import credentials
from devstack.dns import KnotDns
from devstack.httpcheck import get
from devstack.keda import Keda
from devstack.layout import Layout, default_layout
from devstack.prometheus import Prometheus
from devstack.seaweedfs import SeaweedFS
from k8s.spec import INSTANCE_LABEL
from objectstore.client import StorageRefusedError, StorageUnavailableError


@dataclass(frozen=True)
class Unavailable:
    """Why a service cannot be used."""

    reason: str


def require(service: str) -> credentials.Endpoints:
    """Return the stack's endpoints if `service` answers; otherwise fail (CI) or skip."""
    problem = _problem(service)
    if problem is not None:
        message = f"{service} is not reachable: {problem.reason} (start it: python -m devstack up)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return stack_endpoints()


@functools.cache
def stack_endpoints() -> credentials.Endpoints:
    """The URLs and credentials of the running stack."""
    layout = default_layout()
    return credentials.endpoints(layout, credentials.load_or_create(layout))


@functools.cache
def _problem(service: str) -> Unavailable | None:
    layout = default_layout()
    if not layout.credentials.exists():
        return Unavailable(f"no devstack state at {layout.home}")
    found = stack_endpoints()
    if service == "rabbitmq":
        status, body = get(
            f"{found.rabbitmq_management_url}/api/health/checks/alarms",
            basic_auth=(found.rabbitmq_admin_user, found.rabbitmq_admin_password),
        )
        return None if status == 200 else Unavailable(f"management API answered {status} {body}")
    if service == "postgres":
        try:
            with psycopg.connect(found.postgres_admin_url, connect_timeout=3):
                return None
        except psycopg.Error as error:
            return Unavailable(str(error).strip())
    if service == "k8s":
        return _started(layout, service, _api_server_problem)
    if service == "objectstore":
        return _started(layout, service, _storage_problem)
    if service == "dns":
        dns_server = KnotDns(layout)
        return None if dns_server.health()[0].healthy else Unavailable("no answer for its zone")
    if service in ("keda", "prometheus"):
        return _started(layout, service, _health_problem(service))
    raise ValueError(service)


def _api_server_problem(layout: Layout) -> Unavailable | None:
    pki = layout.pki
    if not (pki / "admin.crt").exists():
        return Unavailable(f"the control plane was never started from {layout.home}")
    status, body = get(
        f"https://127.0.0.1:{layout.ports.apiserver}/readyz",
        ca_file=pki / "ca.crt",
        client_cert=(pki / "admin.crt", pki / "admin.key"),
    )
    return None if status == 200 else Unavailable(f"apiserver /readyz answered {status} {body}")


def _storage_problem(layout: Layout) -> Unavailable | None:
    try:
        SeaweedFS(layout, credentials.load_or_create(layout)).storage().ensure_bucket()
    except (StorageUnavailableError, StorageRefusedError) as error:
        return Unavailable(str(error))
    return None


def _health_problem(service: str) -> Callable[[Layout], Unavailable | None]:
    def problem(layout: Layout) -> Unavailable | None:
        component = Keda(layout) if service == "keda" else Prometheus(layout)
        unhealthy = [h.detail for h in component.health() if not h.healthy]
        return Unavailable("; ".join(unhealthy)) if unhealthy else None

    return problem


def _started(
    layout: Layout, service: str, problem: Callable[[Layout], Unavailable | None]
) -> Unavailable | None:
    """A Go-built part of the stack, healthy. On a new machine `devstack up --defer` (CI) leaves
    them to background builds and the tests that need them run last: start them as `devstack
    up` does (which waits for the builds): the control plane and object storage together, as
    the cluster's tests use both, KEDA and Prometheus by name."""
    if problem(layout) is None:
        return None
    command = [sys.executable, "-m", "devstack", "up"]
    if service in ("keda", "prometheus"):
        command.append(service)
    started = subprocess.run(command, capture_output=True, text=True, check=False)
    found = problem(layout)
    if found is not None:
        return Unavailable(f"{found.reason}\n{started.stderr[-2000:]}")
    return None


def management_request(method: str, path: str, body: object | None = None) -> int:
    """Call the RabbitMQ management API as the stack's administrator; return the status."""
    found = stack_endpoints()
    request = urllib.request.Request(  # noqa: S310 - loopback URL from devstack
        f"{found.rabbitmq_management_url}/api/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    token = f"{found.rabbitmq_admin_user}:{found.rabbitmq_admin_password}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return int(response.status)


def management_get(path: str) -> Any:
    """GET a management API resource as the stack's administrator; return the decoded JSON."""
    found = stack_endpoints()
    status, body = get(
        f"{found.rabbitmq_management_url}/api/{path}",
        basic_auth=(found.rabbitmq_admin_user, found.rabbitmq_admin_password),
    )
    if status != 200:
        raise RuntimeError(f"management API GET {path}: {status} {body}")
    return json.loads(body)


def quote(name: str) -> str:
    """Percent-encode a vhost or object name for a management API path or AMQP URL."""
    return urllib.parse.quote(name, safe="")


def service_amqp_password() -> str:
    """The service user's RabbitMQ password."""
    layout = default_layout()
    return credentials.load_or_create(layout).rabbitmq_service


TENANT_PREFIX = "odoo\\_%"
"""LIKE pattern of tenant roles and databases (`k8s/names.py`: `odoo_<key>`)."""


def tenant_names() -> tuple[set[str], set[str]] | None:
    """(databases, roles) of tenants on the stack's PostgreSQL; None when it does not answer."""
    if _problem("postgres") is not None:
        return None
    with psycopg.connect(stack_endpoints().postgres_admin_url, autocommit=True) as admin:
        databases = admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (TENANT_PREFIX,)
        ).fetchall()
        roles = admin.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (TENANT_PREFIX,)
        ).fetchall()
    return {d for (d,) in databases}, {r for (r,) in roles}


def tenants_in_use(names: set[str]) -> set[str]:
    """Of these tenant names, those of instances whose Secret is in a namespace not being
    deleted: a test of another session, sharing the stack, is still working with them.

    A test's namespace is deleted when the test ends, so a finished session's tenants are never
    among them. Without the control plane nothing can tell: none (they are all dropped).
    """
    if not names or _api_server_problem(default_layout()) is not None:
        return set()
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=stack_endpoints().kubeconfig, client_configuration=configuration
    )
    with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        namespaces: Any = core.list_namespace()
        secrets: Any = core.list_secret_for_all_namespaces(label_selector=INSTANCE_LABEL)
    live = {n.metadata.name for n in namespaces.items if n.metadata.deletion_timestamp is None}
    used = {
        f"odoo_{uuid.UUID(secret.metadata.labels[INSTANCE_LABEL]).hex}"
        for secret in secrets.items
        if secret.metadata.namespace in live
    }
    return names & used


def drop_tenants(databases: set[str], roles: set[str]) -> None:
    """Drop these tenant databases (ending their sessions) and roles."""
    with psycopg.connect(stack_endpoints().postgres_admin_url, autocommit=True) as admin:
        for database in sorted(databases):
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
        for role in sorted(roles):
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def backup_env() -> dict[str, str]:
    """The settings that point the service at the stack's object storage (as `devstack env`)."""
    from devstack.__main__ import service_env  # the stack's own command line, only when asked

    exported = service_env(default_layout())
    return {key: value for key, value in exported.items() if "BACKUP" in key}
