"""Schema migrations, run programmatically: no alembic.ini, the service's own engine.

A consumer starting up only reads the version table: alembic (a tenth of a second to import)
is loaded only when there is something to migrate, which keeps a scale-from-zero start short.
"""

from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from store.database import StoreUnavailableError

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = "store:migrations"
MIGRATION_LOCK_KEY = 0x1F5E_0DB0  # any fixed number no instance lock hashes to in practice
HEAD_REVISION = "0008"
"""The newest revision in store/migrations/versions (a test keeps it equal to alembic's head)."""
VERSION_TABLE = "alembic_version"


def _config() -> "Config":
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (the newest by default); a no-op when it is there."""
    if revision == "head" and current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command

    config = _config()
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Replicas starting together migrate one after the other.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except SQLAlchemyError as error:
        reason = str(error).splitlines()[0]
        raise StoreUnavailableError(f"schema upgrade to {revision} failed: {reason}") from error


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to `revision` ("base" removes every table)."""
    from alembic import command

    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    try:
        with engine.connect() as connection:
            return _stored_revision(connection)
    except SQLAlchemyError as error:
        where = engine.url.render_as_string(hide_password=True)
        reason = str(error).splitlines()[0]
        raise StoreUnavailableError(
            f"cannot read the schema revision of {where}: {reason}"
        ) from error


def _stored_revision(connection: Connection) -> str | None:
    """The version table's one row, read without alembic (None: never migrated)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()  # noqa: S608 - a constant
    if len(rows) > 1:
        raise StoreUnavailableError(f"{VERSION_TABLE} holds several revisions: {rows}")
    return str(rows[0]) if rows else None


def head_revision() -> str:
    """The newest revision this code knows, as alembic finds it in the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found in store/migrations")
    return head
