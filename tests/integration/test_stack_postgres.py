"""The local PostgreSQL is real: the admin role creates a tenant that its own credentials open."""

import secrets
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from devstack.credentials import Endpoints
from tests import stack

pytestmark = pytest.mark.postgres


@pytest.fixture
def endpoints() -> Endpoints:
    return stack.require("postgres")


@pytest.fixture
def tenant(endpoints: Endpoints) -> Iterator[tuple[str, str]]:
    """A tenant role and database name, removed afterwards."""
    name = f"tenant_{uuid.uuid4().hex[:10]}"
    yield name, name
    with psycopg.connect(endpoints.postgres_admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_admin_role_is_not_a_superuser(endpoints: Endpoints) -> None:
    with psycopg.connect(endpoints.postgres_admin_url) as admin:
        row = admin.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert row == (False, True, True)


def test_admin_role_may_end_sessions_it_does_not_own(endpoints: Endpoints) -> None:
    # DROP DATABASE ... WITH (FORCE) fails on an autovacuum worker in the database otherwise.
    with psycopg.connect(endpoints.postgres_admin_url) as admin:
        row = admin.execute(
            "SELECT pg_has_role(current_user, 'pg_signal_backend', 'USAGE')"
        ).fetchone()
    assert row == (True,)


def test_tenant_role_and_database_created_by_admin_open_with_new_credentials(
    endpoints: Endpoints, tenant: tuple[str, str]
) -> None:
    role, database = tenant
    password = secrets.token_urlsafe(24)
    with psycopg.connect(endpoints.postgres_admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        # PostgreSQL 15: giving a database to a role needs membership in it.
        admin.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(role)
            )
        )
        admin.execute(
            sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database))
        )

    base = endpoints.postgres_admin_url.split("@", 1)[1].rsplit("/", 1)[0]
    with psycopg.connect(f"postgresql://{role}:{password}@{base}/{database}") as tenant_db:
        tenant_db.execute("CREATE TABLE probe (id int PRIMARY KEY)")
        tenant_db.execute("INSERT INTO probe VALUES (1)")
        current = tenant_db.execute("SELECT current_user, count(*) FROM probe").fetchone()
    assert current == (role, 1)

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(f"postgresql://{role}:wrong-{password}@{base}/{database}").close()
