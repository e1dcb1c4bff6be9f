"""The relay during a state-database outage: it says so once when it starts, again every
OUTAGE_REMINDER_SECONDS, and once when publishing resumes, however often it turns."""

import socket
from pathlib import Path
from typing import Any, cast

import pytest
from pika.adapters.blocking_connection import BlockingChannel
from pydantic import SecretStr

from consumers.relay import OUTAGE_REMINDER_SECONDS, OutboxRelay
from store.database import create_engine
from store.migrate import upgrade
from store.outbox import OutboxRelayStore
from store.settings import StoreSettings

NO_CHANNEL = cast(BlockingChannel, None)
"""Nothing is published in these tests: an empty or unreachable outbox never reaches it."""


def _unreachable_store() -> OutboxRelayStore:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://nobody:nothing@127.0.0.1:{port}/state"
    return OutboxRelayStore(create_engine(StoreSettings(url=SecretStr(url))))


def _empty_store(tmp_path: Path) -> OutboxRelayStore:
    engine = create_engine(StoreSettings(url=SecretStr(f"sqlite:///{tmp_path / 'state.db'}")))
    upgrade(engine)
    return OutboxRelayStore(engine)


def test_an_outage_is_logged_when_it_starts_now_and_then_and_when_it_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    relay = OutboxRelay(_unreachable_store(), clock=lambda: now[0])
    with caplog.at_level("INFO", logger="consumers.relay"):
        for _ in range(50):  # 5 s of turns at 0.1 s
            assert relay.publish_pending(NO_CHANNEL) == 0
            now[0] += 0.1
        now[0] += OUTAGE_REMINDER_SECONDS
        assert relay.publish_pending(NO_CHANNEL) == 0
        relay.store = _empty_store(tmp_path)  # the database answers again
        assert relay.publish_pending(NO_CHANNEL) == 0
        assert relay.publish_pending(NO_CHANNEL) == 0
    said: list[tuple[str, Any]] = [
        (r.getMessage(), getattr(r, "seconds", None)) for r in caplog.records
    ]
    assert said == [
        ("outbox not published: state database unavailable", None),
        ("outbox still not published", 35.0),
        ("outbox publishing resumed", 35.0),
    ]
    error = caplog.records[0].error  # type: ignore[attr-defined]
    assert "state database unavailable" in error or "outbox unavailable" in error
    assert "nothing" not in error  # the password
