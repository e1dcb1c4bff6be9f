"""Creates the SQLAlchemy engine from settings and checks that the database answers.

SQLite is set up for one writer at a time (WAL, a busy timeout, and BEGIN IMMEDIATE so a
transaction takes the write lock up front instead of failing when it upgrades), which is the
single-writer behaviour the store relies on there. PostgreSQL runs at READ COMMITTED with
explicit locks where order matters.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeAlias

import sqlalchemy
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import Session

from messages.errors import RetryableError
from store.settings import StoreSettings
from telemetry.redaction import redact_url

SQLITE_BUSY_TIMEOUT_MS = 30_000
_READ_ONLY = "instance_service_read_only"
"""Execution option of a `reading` connection on SQLite: begin no write transaction."""

tracer = trace.get_tracer("instance_service.store")

StateEngine: TypeAlias = Engine
"""The store's engine, as layers that may not import SQLAlchemy name it."""


class StoreUnavailableError(Exception):
    """The state database could not be opened."""


class StoreInterruptedError(StoreUnavailableError, RetryableError):
    """The state database stopped answering in the middle of work (a restart, a failover, a
    dropped connection): nothing was recorded, so the command is retried on the retry schedule
    like any other passing failure, not counted as a bug."""


def interrupted(error: sqlalchemy.exc.OperationalError) -> StoreInterruptedError:
    """The retryable form of a driver's operational error, with its first line only."""
    reason = str(error.orig or error).splitlines()[0]
    return StoreInterruptedError(f"state database unavailable: {reason}")


def database_url(settings: StoreSettings) -> URL:
    """The configured URL, with PostgreSQL pointed at the psycopg 3 driver the service ships."""
    raw = settings.url.get_secret_value()
    try:
        url = make_url(raw)
    except sqlalchemy.exc.ArgumentError as error:
        raise StoreUnavailableError(f"invalid database URL {redact_url(raw)}: {error}") from error
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def create_engine(settings: StoreSettings) -> Engine:
    """Build an engine for the configured URL (SQLite file by default)."""
    url = database_url(settings)
    if url.get_backend_name() == "sqlite":
        engine = sqlalchemy.create_engine(url, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.get_backend_name() != "postgresql":
        raise StoreUnavailableError(
            f"unsupported database {url.get_backend_name()!r}: use sqlite:/// or postgresql://"
        )
    # hide_parameters: values bound to a statement never appear in an error's text.
    return sqlalchemy.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        hide_parameters=True,
    )


@contextmanager
def traced_session(engine: Engine, name: str | None, *, write: bool = False) -> Iterator[Session]:
    """A session for one unit of work (one transaction when `write`) in a CLIENT span
    `db <name>`, so a trace shows each read and each commit of the service's own state.

    `name` None: the unit's steps are traced one by one instead (`traced_step`), for a
    transaction that does two things a trace should tell apart.
    """
    with traced_step(engine, name) if name is not None else nullcontext():
        # The session's close is inside the try: a read-only unit ends with a ROLLBACK, which
        # meets a database that went away after the last read as any statement would.
        try:
            with (
                Session(engine, expire_on_commit=False) as session,
                session.begin() if write else nullcontext(),
            ):
                yield session
        except sqlalchemy.exc.OperationalError as error:
            raise interrupted(error) from error


def traced_step(engine: Engine, name: str, batch: int = 1) -> AbstractContextManager[object]:
    """A CLIENT span `db <name>` for a unit of work or one step of it (`batch`: how many
    commands it does at once).

    Only work inside a trace gets a span: the relay's idle polling would otherwise start a new
    trace every turn.
    """
    if not trace.get_current_span().is_recording():
        return nullcontext()
    attributes: dict[str, str | int] = {
        "db.system.name": engine.dialect.name,
        "db.operation.name": name,
    }
    if batch > 1:
        attributes["db.operation.batch.size"] = batch
    return tracer.start_as_current_span(f"db {name}", kind=SpanKind.CLIENT, attributes=attributes)


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction on a Core connection; a dropped database is StoreInterruptedError."""
    try:
        with engine.begin() as connection:
            yield connection
    except sqlalchemy.exc.OperationalError as error:
        raise interrupted(error) from error


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A Core connection for reads that need no transaction of their own (one statement, or
    several that need not agree): no BEGIN and no ROLLBACK round trips on PostgreSQL
    (autocommit), no write lock taken on SQLite (a plain deferred read)."""
    try:
        with engine.connect() as connection:
            if is_postgresql(engine):
                connection.execution_options(isolation_level="AUTOCOMMIT")
            else:
                connection.execution_options(**{_READ_ONLY: True})
            yield connection
    except sqlalchemy.exc.OperationalError as error:
        raise interrupted(error) from error


def _sqlite_connect(connection: sqlite3.Connection, _record: Any) -> None:
    # Take transaction control from the driver so that `begin` below decides how to start.
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # FULL: a commit is on disk before the consumer acknowledges what it recorded.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    if not connection.get_execution_options().get(_READ_ONLY):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgresql(engine: Engine) -> bool:
    """Whether the store runs on PostgreSQL (else SQLite)."""
    return engine.dialect.name == "postgresql"


def ping(engine: Engine) -> str:
    """Run a trivial query; return the database's dialect name."""
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError as error:
        where = engine.url.render_as_string(hide_password=True)
        raise StoreUnavailableError(f"cannot open the state database {where}: {error}") from error
    return engine.dialect.name
