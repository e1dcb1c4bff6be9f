"""Creates the SQLAlchemy engine from settings and checks that the database answers."""

import sqlalchemy
from sqlalchemy.engine import Engine

from store.settings import StoreSettings
from telemetry.redaction import redact_url


class StoreUnavailableError(Exception):
    """The state database could not be opened."""


def create_engine(settings: StoreSettings) -> Engine:
    """Build an engine for the configured URL (SQLite file by default)."""
    url = settings.url.get_secret_value()
    try:
        return sqlalchemy.create_engine(url, pool_pre_ping=True)
    except (sqlalchemy.exc.ArgumentError, ImportError) as error:
        raise StoreUnavailableError(f"invalid database URL {redact_url(url)}: {error}") from error


def ping(engine: Engine) -> str:
    """Run a trivial query; return the database's dialect name."""
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError as error:
        where = engine.url.render_as_string(hide_password=True)
        raise StoreUnavailableError(f"cannot open the state database {where}: {error}") from error
    return engine.dialect.name
