"""The consumer tests use the real local RabbitMQ (one vhost each) and an SQLite state file."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from store.database import create_engine
from store.migrate import upgrade
from store.settings import StoreSettings


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite state file."""
    engine = create_engine(StoreSettings(url=SecretStr(f"sqlite:///{tmp_path / 'state.db'}")))
    upgrade(engine)
    yield engine
    engine.dispose()
