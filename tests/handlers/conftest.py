"""Lifecycle tests: the real broker, the real control plane, the real tenant PostgreSQL."""

from collections.abc import Iterator

import pytest
from kubernetes import client
from sqlalchemy.engine import Engine

from tests import stack
from tests.handlers.harness import Lifecycle, lifecycle


@pytest.fixture
def engine(sqlite_engine: Engine) -> Engine:
    """The service's own state on SQLite (the default; both stores are proven in tests/store)."""
    return sqlite_engine


@pytest.fixture
def namespace(tenant_namespace: str) -> str:
    """Every lifecycle test runs in a namespace shaped as the tenants' one is: each pod the
    service makes must pass the API server's Pod Security admission (`restricted`)."""
    return tenant_namespace


@pytest.fixture
def admin_url() -> str:
    """The tenant admin role's URL."""
    return stack.require("postgres").postgres_admin_url


@pytest.fixture
def driver(
    amqp_url: str, engine: Engine, k8s_api: client.ApiClient, namespace: str, admin_url: str
) -> Iterator[Lifecycle]:
    """A consumer with the real handlers on this test's namespace, vhost and state."""
    with lifecycle(amqp_url, engine, k8s_api, namespace, admin_url) as running:
        yield running


@pytest.fixture
def watching_driver(
    amqp_url: str, engine: Engine, k8s_api: client.ApiClient, namespace: str, admin_url: str
) -> Iterator[Lifecycle]:
    """As `driver`, with a consumer that does not park: waits are watched in the worker thread
    (one delivery, one decision), as without an informer or with the parking lot full."""
    with lifecycle(amqp_url, engine, k8s_api, namespace, admin_url, parks=False) as running:
        yield running
