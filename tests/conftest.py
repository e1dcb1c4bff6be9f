"""Fixtures: each test gets its own RabbitMQ vhost, PostgreSQL database and Kubernetes namespace."""

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from kubernetes import client, config, utils
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from psycopg import sql
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from devstack.credentials import RABBITMQ_SERVICE_USER
from instance_service import __version__
from k8s.tenancy import build_default_deny, build_tenant_namespace
from store.database import create_engine
from store.migrate import upgrade
from store.settings import StoreSettings
from telemetry.metrics import configure_metrics
from telemetry.tracing import configure_tracing
from tests import stack
from tests.telemetry_capture import Telemetry

SERVICE_MARKERS = ("rabbitmq", "postgres", "k8s", "objectstore", "keda", "prometheus")
FAULT_TIMEOUT_SECONDS = 600
"""The bound of one fault test (pytest-timeout fails it past that), times FAULT_SCALE."""


CLUSTER_FIXTURES = frozenset({"k8s_api", "namespace", "tenant_namespace"})


def _stage(item: pytest.Item) -> tuple[bool, bool, bool, bool]:
    """When a test runs: first those needing no Go-built part of the stack, then the cluster's
    (control plane, object storage), then Prometheus', KEDA's, and the lifecycle ones last."""

    def marked(name: str) -> bool:
        return item.get_closest_marker(name) is not None

    cluster = marked("k8s") or marked("objectstore")
    cluster = cluster or not CLUSTER_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
    return (marked("devstack_lifecycle"), marked("keda"), marked("prometheus"), cluster)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the tests by `_stage`; bound the time of each fault test, so that a fault the
    service does not recover from fails instead of hanging."""
    # On a new machine CI starts only what is built and builds the rest in the background, in
    # this order (`devstack up --defer`): the tests that need a build wait for it (tests/stack.py),
    # while those that need none ran meanwhile. Lifecycle tests stop and restart the whole stack.
    items.sort(key=_stage)
    scale = int(os.environ.get("FAULT_SCALE", "1"))
    for item in items:
        if item.get_closest_marker("fault") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(FAULT_TIMEOUT_SECONDS * scale))


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers that are not about one service."""
    config.addinivalue_line(
        "markers", "devstack_lifecycle: stops and restarts the local stack; runs last"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Check every service a test is marked with before it runs."""
    for marker in SERVICE_MARKERS:
        if item.get_closest_marker(marker) is not None:
            stack.require(marker)


@pytest.fixture(scope="session", autouse=True)
def _tenant_databases_dropped() -> Iterator[None]:
    """Tenant roles and databases the tests' handlers made are dropped at the end of the run
    (their namespaces go with each test): otherwise every run leaves a hundred more on the
    stack's PostgreSQL, and the autovacuum of thousands of them slows whatever runs next.
    Several sessions share the stack: the tenants of another session's running tests (their
    namespace still live) are not this session's to drop."""
    before = stack.tenant_names()
    yield
    after = stack.tenant_names()
    if before is not None and after is not None:
        databases, roles = after[0] - before[0], after[1] - before[1]
        used = stack.tenants_in_use(databases | roles)
        stack.drop_tenants(databases - used, roles - used)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures the root logger; give the next test the logging it had before."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session", autouse=True)
def telemetry() -> Telemetry:
    """The process's tracer and meter providers, into memory (set once: they are global).

    Installed before any test, so a test that runs the CLI in process (which installs the
    service's own providers) cannot take the global slot first and leave later tests reading
    an exporter nothing writes to."""
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    if configure_tracing(__version__, processors=(SimpleSpanProcessor(exporter),)) is None:
        pytest.fail("tracing is disabled (OTEL_SDK_DISABLED)")
    if configure_metrics(__version__, readers=(reader,)) is None:
        pytest.fail("metrics are disabled (OTEL_SDK_DISABLED)")
    return Telemetry(exporter, reader)


def _unique(prefix: str, separator: str = "-") -> str:
    return f"{prefix}{separator}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def amqp_vhost() -> Iterator[str]:
    """A fresh vhost the service user may use fully; deleted afterwards."""
    stack.require("rabbitmq")
    vhost = _unique("test")
    stack.management_request("PUT", f"vhosts/{stack.quote(vhost)}")
    stack.management_request(
        "PUT",
        f"permissions/{stack.quote(vhost)}/{stack.quote(RABBITMQ_SERVICE_USER)}",
        {"configure": ".*", "write": ".*", "read": ".*"},
    )
    yield vhost
    stack.management_request("DELETE", f"vhosts/{stack.quote(vhost)}")


@pytest.fixture
def amqp_url(amqp_vhost: str) -> str:
    """AMQP URL of the service user on the test's own vhost."""
    found = stack.stack_endpoints()
    password = stack.service_amqp_password()
    return found.amqp_url_for(stack.quote(amqp_vhost), RABBITMQ_SERVICE_USER, password)


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh database owned by the admin role; its psycopg URL. Dropped afterwards."""
    found = stack.require("postgres")
    name = _unique("test", "_")
    with psycopg.connect(found.postgres_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield found.postgres_admin_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(found.postgres_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """The service's own state on a migrated SQLite file (its default store)."""
    engine = create_engine(StoreSettings(url=SecretStr(f"sqlite:///{tmp_path / 'state.db'}")))
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def k8s_api() -> Iterator[client.ApiClient]:
    """An API client with the stack's admin kubeconfig."""
    found = stack.require("k8s")
    configuration = client.Configuration()
    config.load_kube_config(config_file=found.kubeconfig, client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        yield api


@pytest.fixture
def namespace(k8s_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace; deleted (not awaited) afterwards."""
    name = _unique("test")
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def tenant_namespace(k8s_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace shaped as deploy/ shapes the tenants' (k8s/tenancy.py): Pod Security
    `restricted` enforced by the API server, and a NetworkPolicy denying all by default."""
    name = _unique("tenants")
    utils.create_from_dict(k8s_api, build_tenant_namespace(name))
    utils.create_from_dict(k8s_api, build_default_deny(name), namespace=name)
    yield name
    client.CoreV1Api(k8s_api).delete_namespace(name, propagation_policy="Background")
