"""Each tenant's own PostgreSQL role and database, made and removed through the admin role.

The role is NOSUPERUSER NOCREATEDB NOCREATEROLE and owns its database; CONNECT is revoked from
PUBLIC, so no other tenant's role can connect. The maintenance databases (`postgres`,
`template1`) are the operator's: PostgreSQL lets PUBLIC connect to them unless told otherwise,
so `open_maintenance_databases` finds them and `consume` refuses to start until they are
closed. Everything is idempotent: a re-run finds what an earlier (perhaps interrupted) run
made and brings it to the same state.
"""

import re

import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from messages.errors import RetryableError
from store.database import StoreUnavailableError
from telemetry.redaction import redact_url

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MAINTENANCE_DATABASES = ("postgres", "template1")


def close_maintenance_advice(open_databases: list[str], admin_url: str) -> str:
    """What to run, as a superuser or the databases' owner, to close them to tenant roles."""
    url = make_url(admin_url)
    statements = [f'REVOKE CONNECT ON DATABASE "{d}" FROM PUBLIC;' for d in open_databases]
    if url.database in open_databases and url.username:
        # The admin role connects there itself: it keeps its own grant.
        statements.append(f'GRANT CONNECT ON DATABASE "{url.database}" TO "{url.username}";')
    return (
        f"PUBLIC may CONNECT to {', '.join(open_databases)}, so every tenant's database role "
        f"can log in there; run as a superuser: {' '.join(statements)}"
    )


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

    @classmethod
    def connect(cls, admin_url: str) -> "TenantDatabases":
        """From the admin role's URL; StoreUnavailableError if it is not a PostgreSQL URL."""
        try:
            url = make_url(admin_url)
        except ArgumentError as error:
            raise StoreUnavailableError(
                f"invalid tenant admin URL {redact_url(admin_url)}"
            ) from error
        if url.get_backend_name() != "postgresql":
            raise StoreUnavailableError(
                f"the tenant admin URL must be postgresql://..., not {url.get_backend_name()}"
            )
        url = url.set(drivername="postgresql+psycopg")
        # Tenant work is occasional: a small pool, checked before use; values never in errors.
        engine = sqlalchemy.create_engine(
            url, pool_size=2, max_overflow=4, pool_pre_ping=True, hide_parameters=True
        )
        return cls(engine)

    def ping(self) -> None:
        """Check that the admin role can connect; StoreUnavailableError if not."""
        try:
            with self.admin.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as error:
            where = self.admin.url.render_as_string(hide_password=True)
            first = str(error).splitlines()[0]
            raise StoreUnavailableError(
                f"cannot reach tenant PostgreSQL {where}: {first}"
            ) from error

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

    def open_maintenance_databases(self) -> list[str]:
        """The maintenance databases PUBLIC may CONNECT to, so every tenant's role may log in."""
        try:
            with self.admin.connect() as connection:
                found = connection.execute(
                    text(
                        "SELECT datname FROM pg_database WHERE datname = ANY(:names)"
                        " AND has_database_privilege('public', oid, 'CONNECT') ORDER BY datname"
                    ),
                    {"names": list(MAINTENANCE_DATABASES)},
                ).scalars()
                return list(found)
        except SQLAlchemyError as error:
            raise StoreUnavailableError(
                f"cannot read the databases' privileges: {str(error).splitlines()[0]}"
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
