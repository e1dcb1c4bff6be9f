"""PostgreSQL: the one connection holding a process's advisory locks is cut while commands hold
them. The server frees the keys at once; every holder's next write must then fail (retryable)
instead of running on without exclusivity."""

import time

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from messages.errors import RetryableError
from messages.events import InstanceEventData, StoppedEvent
from messages.examples import INSTANCE_ID
from store.database import StoreInterruptedError
from store.ledger import Ledger
from store.lifecycle import InstanceStatus
from store.locks import AdvisoryLocks, LockLostError
from store.records import Outcome
from tests.catalog import MACHINE
from tests.store.conftest import command
from tests.store.test_ledger import OTHER_ID, _provision, _status

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url(postgres_database: str) -> str:
    """PostgreSQL only (conftest's `engine` migrates it)."""
    return postgres_database


def _terminate(database_url: str, pid: int) -> None:
    """End a backend from another session, as a server restart or an operator would."""
    with psycopg.connect(database_url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, "the backend outlived its termination"
            time.sleep(0.05)


def test_a_lost_lock_session_fails_every_holders_next_write(
    engine: Engine, postgres_database: str
) -> None:
    locks = AdvisoryLocks(engine)
    ledger = Ledger(engine, MACHINE, locks)
    _provision(ledger)
    stop = command("odoo.instance.stop.v1", seconds=1)
    provision = command(
        "odoo.instance.provision.v1",
        command_id="provision-b",
        instance_id=OTHER_ID,
        subdomain="beta",
    )
    held = locks.take([INSTANCE_ID, OTHER_ID])
    assert held.keys == {INSTANCE_ID, OTHER_ID}
    ledger.start(stop)  # fenced, and the session is alive: it passes
    pid = locks.backend_pid
    assert pid is not None

    _terminate(postgres_database, pid)
    rival = AdvisoryLocks(engine)  # another replica: the server freed the keys
    assert rival.take([INSTANCE_ID]).keys == {INSTANCE_ID}

    stopped = StoppedEvent.caused_by(stop, InstanceEventData(instance_id=INSTANCE_ID))
    with pytest.raises(LockLostError) as lost:
        ledger.record(stop, Outcome.SUCCEEDED, stopped)  # the first write after the cut
    assert isinstance(lost.value, RetryableError)
    assert ledger.outcome_of(stop.id) is None
    assert _status(ledger, INSTANCE_ID) is InstanceStatus.STOPPING
    with pytest.raises(LockLostError):
        ledger.start(provision)  # the other holder of the same session: fenced off too
    assert ledger.instance(OTHER_ID) is None
    assert locks.take([INSTANCE_ID]).busy == {INSTANCE_ID}, "still its holder's until released"

    held.release()
    rival.close()
    with ledger.exclusive(stop):  # a new session: the key is really held again
        assert locks.backend_pid not in (None, pid)
        ledger.record(stop, Outcome.SUCCEEDED, stopped)
    assert _status(ledger, INSTANCE_ID) is InstanceStatus.STOPPED
    locks.close()


def test_keys_of_one_batch_are_taken_and_freed_in_one_statement_each(engine: Engine) -> None:
    locks = AdvisoryLocks(engine)
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    keys = [f"instance-{n}" for n in range(50)]
    with locks.take(["warm-up"]):
        pass  # opens the lock session
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with locks.take(keys) as held:
            assert held.keys == set(keys)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(statements) == 2
    assert "pg_try_advisory_lock" in statements[0]
    assert "pg_advisory_unlock" in statements[1]
    locks.close()


def test_a_take_on_a_cut_session_is_retryable_and_fences_the_keys_held_on_it(
    engine: Engine, postgres_database: str
) -> None:
    locks = AdvisoryLocks(engine)
    ledger = Ledger(engine, MACHINE, locks)
    _provision(ledger)
    stop = command("odoo.instance.stop.v1", seconds=1)
    held = locks.take([INSTANCE_ID])
    pid = locks.backend_pid
    assert pid is not None
    _terminate(postgres_database, pid)

    with pytest.raises(StoreInterruptedError) as cut:
        locks.take([OTHER_ID])  # the first use of the cut connection finds it broken
    assert isinstance(cut.value, RetryableError)
    with pytest.raises(LockLostError):
        ledger.start(stop)  # known lost: refused without asking the server
    assert _status(ledger, INSTANCE_ID) is InstanceStatus.RUNNING

    with locks.take([OTHER_ID]) as other:  # a new session serves new keys at once
        assert other.keys == {OTHER_ID}
        assert locks.backend_pid not in (None, pid)
    held.release()
    with ledger.exclusive(stop):
        ledger.start(stop)
    assert _status(ledger, INSTANCE_ID) is InstanceStatus.STOPPING
    locks.close()
