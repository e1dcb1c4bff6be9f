"""The consumer tests use the real local RabbitMQ (one vhost each) and each state database."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from store.database import create_engine
from store.migrate import upgrade
from store.settings import StoreSettings


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated state database: an SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    engine = create_engine(StoreSettings(url=SecretStr(url)))
    upgrade(engine)
    yield engine
    engine.dispose()
