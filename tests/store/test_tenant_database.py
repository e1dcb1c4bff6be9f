"""Tenant roles and databases on the real PostgreSQL, made by the non-superuser admin role."""

import secrets
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from pydantic import SecretStr

from devstack.credentials import Endpoints
from store.database import create_engine
from store.settings import StoreSettings
from store.tenant_database import TenantDatabases, _verifier
from tests import stack

pytestmark = pytest.mark.postgres


@pytest.fixture
def endpoints() -> Endpoints:
    return stack.require("postgres")


@pytest.fixture
def tenants(endpoints: Endpoints) -> Iterator[TenantDatabases]:
    engine = create_engine(StoreSettings(url=SecretStr(endpoints.postgres_admin_url)))
    yield TenantDatabases(engine)
    engine.dispose()


@pytest.fixture
def names(tenants: TenantDatabases) -> Iterator[tuple[str, str]]:
    name = f"odoo_{uuid.uuid4().hex}"
    yield name, name
    tenants.drop(name, name)


def _url(endpoints: Endpoints, role: str, password: str, database: str) -> str:
    server = endpoints.postgres_admin_url.split("@", 1)[1].rsplit("/", 1)[0]
    return f"postgresql://{role}:{password}@{server}/{database}"


def test_ensure_makes_a_role_that_opens_its_database_and_no_other(
    tenants: TenantDatabases, names: tuple[str, str], endpoints: Endpoints
) -> None:
    role, database = names
    password = secrets.token_urlsafe(32)
    tenants.ensure(role, database, password)
    assert tenants.exists(role, database)
    with psycopg.connect(_url(endpoints, role, password, database)) as tenant:
        tenant.execute("CREATE TABLE res_partner (id int)")
        flags = tenant.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert flags == (False, False, False)
    for other in ("instance_service", "postgres", "template1"):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(_url(endpoints, role, password, other)).close()


def test_ensure_again_finds_what_is_there_and_takes_the_current_password(
    tenants: TenantDatabases, names: tuple[str, str], endpoints: Endpoints
) -> None:
    role, database = names
    tenants.ensure(role, database, "first-" + secrets.token_urlsafe(24))
    second = "second-" + secrets.token_urlsafe(24)
    tenants.ensure(role, database, second)
    with psycopg.connect(_url(endpoints, role, second, database)) as tenant:
        assert tenant.execute("SELECT current_database()").fetchone() == (database,)


def test_tenants_cannot_reach_each_other(
    tenants: TenantDatabases, names: tuple[str, str], endpoints: Endpoints
) -> None:
    role, database = names
    other = f"odoo_{uuid.uuid4().hex}"
    password = secrets.token_urlsafe(32)
    tenants.ensure(role, database, password)
    tenants.ensure(other, other, secrets.token_urlsafe(32))
    try:
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(_url(endpoints, role, password, other)).close()
    finally:
        tenants.drop(other, other)


def test_drop_removes_both_and_is_idempotent(
    tenants: TenantDatabases, names: tuple[str, str], endpoints: Endpoints
) -> None:
    role, database = names
    password = secrets.token_urlsafe(32)
    tenants.ensure(role, database, password)
    session = psycopg.connect(_url(endpoints, role, password, database))  # still connected
    try:
        tenants.drop(role, database)
    finally:
        session.close()
    assert not tenants.exists(role, database)
    tenants.drop(role, database)


def test_the_server_gets_a_verifier_not_the_password(tenants: TenantDatabases) -> None:
    with tenants.admin.connect() as connection:
        verifier = _verifier(connection, "odoo_x", "hunter2")
    assert verifier.startswith("'SCRAM-SHA-256$4096:")
    assert "hunter2" not in verifier
