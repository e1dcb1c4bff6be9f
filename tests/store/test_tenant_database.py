"""Tenant roles and databases on the real PostgreSQL, made by the non-superuser admin role."""

import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from devstack import credentials
from devstack.__main__ import service_env
from devstack.credentials import POSTGRES_ADMIN_ROLE, Endpoints
from devstack.layout import default_layout
from devstack.postgres import Postgres
from instance_service.cli import EXIT_CONFIG
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


def test_a_tenants_credentials_are_refused_on_another_tenants_database(
    tenants: TenantDatabases, endpoints: Endpoints
) -> None:
    a, b = f"odoo_{uuid.uuid4().hex}", f"odoo_{uuid.uuid4().hex}"
    password_a, password_b = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    try:
        tenants.ensure(a, a, password_a)
        tenants.ensure(b, b, password_b)
        psycopg.connect(_url(endpoints, b, password_b, b)).close()
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(_url(endpoints, a, password_a, b)).close()
    finally:
        tenants.drop(a, a)
        tenants.drop(b, b)


@pytest.fixture
def public_may_connect_to_postgres() -> Iterator[None]:
    """PostgreSQL's own default, which the local stack revokes: PUBLIC may CONNECT."""
    layout = default_layout()
    server = Postgres(layout, credentials.load_or_create(layout))
    server.psql('GRANT CONNECT ON DATABASE "postgres" TO PUBLIC')
    try:
        yield
    finally:
        server.psql('REVOKE CONNECT ON DATABASE "postgres" FROM PUBLIC')


def test_the_maintenance_databases_are_closed_to_tenants_on_the_local_stack(
    tenants: TenantDatabases,
) -> None:
    assert tenants.open_maintenance_databases() == []


@pytest.mark.k8s  # `consume --check` reaches the cluster before it looks at PostgreSQL's grants
def test_consume_refuses_to_start_while_public_may_connect_and_says_what_to_run(
    tenants: TenantDatabases, public_may_connect_to_postgres: None, tmp_path: Path
) -> None:
    assert tenants.open_maintenance_databases() == ["postgres"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("INSTANCE_SERVICE_")},
        **service_env(default_layout()),
        "INSTANCE_SERVICE_STORE__URL": f"sqlite:///{tmp_path}/state.db",
    }
    checked = subprocess.run(
        [sys.executable, "-m", "instance_service", "consume", "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == EXIT_CONFIG, checked.stderr
    (line,) = [json.loads(x) for x in checked.stderr.splitlines() if "isolated" in x]
    assert line["message"].startswith(
        "tenants would not be isolated: PUBLIC may CONNECT to postgres"
    )
    assert 'REVOKE CONNECT ON DATABASE "postgres" FROM PUBLIC;' in line["message"]
    assert f'GRANT CONNECT ON DATABASE "postgres" TO "{POSTGRES_ADMIN_ROLE}";' in line["message"]
