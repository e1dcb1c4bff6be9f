"""Each tenant's own PostgreSQL role and database, made and removed through the admin role.

The role is NOSUPERUSER NOCREATEDB NOCREATEROLE and owns its database; CONNECT is revoked from
PUBLIC, so no other tenant's role can connect. Everything is idempotent: a re-run finds what an
earlier (perhaps interrupted) run made and brings it to the same state.
"""

import re

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from messages.errors import RetryableError

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _quoted(identifier: str) -> str:
    # Names come from k8s/names.py (odoo_<hex>); anything else is a programming error.
    if not _IDENTIFIER.match(identifier):
        raise ValueError(f"not a tenant identifier: {identifier!r}")
    return f'"{identifier}"'


def _verifier(connection: Connection, role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier, computed by libpq here: the password itself never reaches
    the server, its logs or an error message (as with psql's \\password)."""
    pgconn = connection.connection.dbapi_connection.pgconn  # type: ignore[union-attr]
    verifier = pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    text_ = bytes(verifier).decode("ascii")
    if "'" in text_:  # a verifier is base64 and punctuation; never a quote
        raise ValueError("unexpected character in a password verifier")
    return f"'{text_}'"


class TenantDatabases:
    """Tenant roles and databases on the PostgreSQL the admin URL points at."""

    def __init__(self, admin: Engine) -> None:
        self.admin = admin.execution_options(isolation_level="AUTOCOMMIT")  # CREATE DATABASE

    def ensure(self, role: str, database: str, password: str) -> None:
        """Make (or bring back in line) the role, its password, and its database."""
        try:
            with self.admin.connect() as connection:
                exists = connection.execute(
                    text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}
                ).scalar()
                secret = _verifier(connection, role, password)
                # exec_driver_sql: a verifier's ':' must not be read as a bind parameter.
                if exists:  # only a superuser may restate NOSUPERUSER; the password is ours
                    connection.exec_driver_sql(f"ALTER ROLE {_quoted(role)} PASSWORD {secret}")
                else:
                    connection.exec_driver_sql(
                        f"CREATE ROLE {_quoted(role)} LOGIN NOSUPERUSER NOCREATEDB "
                        f"NOCREATEROLE PASSWORD {secret}"
                    )
                # PostgreSQL 15: handing a database to a role needs membership in it.
                connection.execute(text(f"GRANT {_quoted(role)} TO CURRENT_USER"))
                has_database = connection.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :db"), {"db": database}
                ).scalar()
                if not has_database:
                    connection.execute(
                        text(f"CREATE DATABASE {_quoted(database)} OWNER {_quoted(role)}")
                    )
                connection.execute(
                    text(f"REVOKE CONNECT ON DATABASE {_quoted(database)} FROM PUBLIC")
                )
        except SQLAlchemyError as error:
            raise RetryableError(
                f"tenant database {database}: {str(error).splitlines()[0]}"
            ) from error

    def exists(self, role: str, database: str) -> bool:
        """Whether both the role and the database are there."""
        with self.admin.connect() as connection:
            found = connection.execute(
                text(
                    "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = :role)"
                    " + (SELECT count(*) FROM pg_database WHERE datname = :db)"
                ),
                {"role": role, "db": database},
            ).scalar_one()
        return int(found) == 2

    def drop(self, role: str, database: str) -> None:
        """Remove the database (closing its sessions) and the role; absent ones are fine."""
        try:
            with self.admin.connect() as connection:
                connection.execute(
                    text(f"DROP DATABASE IF EXISTS {_quoted(database)} WITH (FORCE)")
                )
                connection.execute(text(f"DROP ROLE IF EXISTS {_quoted(role)}"))
        except SQLAlchemyError as error:
            raise RetryableError(
                f"tenant database {database}: {str(error).splitlines()[0]}"
            ) from error
