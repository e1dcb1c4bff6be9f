"""Every store test runs twice: on an SQLite file and on the local PostgreSQL."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from messages.amqp import AmqpProperties
from messages.commands import AnyCommand
from messages.examples import INSTANCE_ID, command_example
from messages.parsing import parse_command
from store.database import create_engine
from store.ledger import Ledger
from store.migrate import upgrade
from store.settings import StoreSettings
from tests.catalog import MACHINE

BASE_TIME = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a migrated database."""
    engine = create_engine(StoreSettings(url=SecretStr(database_url)))
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def ledger(engine: Engine) -> Ledger:
    """The ledger with the lock kind of its database."""
    return Ledger(engine, MACHINE)


def command(
    command_type: str,
    *,
    command_id: str | None = None,
    seconds: float = 0,
    instance_id: str = INSTANCE_ID,
    **data: Any,
) -> AnyCommand:
    """A valid command of `command_type`, `seconds` after the base time."""
    document = command_example(command_type)
    document["id"] = command_id or f"{command_type.split('.')[-2]}-{seconds:g}"
    document["time"] = (BASE_TIME + timedelta(seconds=seconds)).isoformat()
    if "subject" in document:
        document["subject"] = instance_id
        document["data"]["instance_id"] = instance_id
    document["data"].update(data)
    return parse_command(json.dumps(document).encode(), AmqpProperties())
