"""State-changing commands of one instance never overlap, across threads and processes."""

import itertools
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest
from sqlalchemy.engine import Engine

from messages.commands import AnyCommand, InstanceCommand
from messages.errors import MessageRejected
from messages.events import CommandRejectedEvent, InstanceEventData, RestartedEvent
from store.database import is_postgresql
from store.ledger import Ledger
from store.locks import InstanceBusyError, locks_for
from store.records import Outcome
from tests.store.conftest import command
from tests.store.test_ledger import _provision

WORKERS = 8


@dataclass
class Race:
    """What the racing workers saw."""

    intervals: list[tuple[float, float]] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    retries: int = 0
    guard: threading.Lock = field(default_factory=threading.Lock)


def _process(ledger: Ledger, cmd: AnyCommand, race: Race) -> None:
    """Handle one command as a consumer would: retry while busy, then record an outcome."""
    assert isinstance(cmd, InstanceCommand)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with ledger.exclusive(cmd):
                entered = time.monotonic()
                try:
                    ledger.begin(cmd, ledger.admit(cmd))
                except MessageRejected as rejection:
                    event = CommandRejectedEvent.for_rejection(rejection, subject=cmd.subject)
                    ledger.record(cmd, Outcome.REJECTED, event)
                    outcome = Outcome.REJECTED
                else:
                    time.sleep(0.02)  # the side effects
                    data = InstanceEventData(instance_id=cmd.subject)
                    ledger.record(cmd, Outcome.SUCCEEDED, RestartedEvent.caused_by(cmd, data))
                    outcome = Outcome.SUCCEEDED
                left = time.monotonic()
            with race.guard:
                race.intervals.append((entered, left))
                race.outcomes[cmd.id] = outcome
            return
        except InstanceBusyError:
            with race.guard:
                race.retries += 1
            time.sleep(0.005)
    pytest.fail(f"{cmd.id} never got its turn")


def test_racing_commands_never_overlap_and_all_end(ledger: Ledger) -> None:
    _provision(ledger)
    commands = [command("odoo.instance.restart.v1", seconds=i + 1) for i in range(WORKERS)]
    race = Race()
    threads = [
        threading.Thread(
            target=_process, args=(Ledger(ledger.engine, ledger.machine, ledger.locks), c, race)
        )
        for c in commands
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert set(race.outcomes) == {c.id for c in commands}
    spans = sorted(race.intervals)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
    assert race.retries > 0, "the workers never collided; the race proved nothing"
    # Every command has exactly one recorded outcome; older ones that came late are stale.
    for c in commands:
        stored = ledger.outcome_of(c.id)
        assert stored is not None
        assert stored.outcome is race.outcomes[c.id]
    assert Outcome.SUCCEEDED in race.outcomes.values()


def test_a_lock_dies_with_its_holder(engine: Engine, database_url: str) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pydantic import SecretStr\n"
            "from store.database import create_engine\n"
            "from store.locks import locks_for\n"
            "from store.settings import StoreSettings\n"
            "locks = locks_for(create_engine(StoreSettings(url=SecretStr(sys.argv[1]))))\n"
            "with locks.hold('instance-x'):\n"
            "    print(type(locks).__name__, flush=True)\n"
            "    time.sleep(600)\n",
            database_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        kind = holder.stdout.readline().strip()
        assert kind == ("AdvisoryLocks" if is_postgresql(engine) else "FileLocks")
        locks = locks_for(engine)
        with pytest.raises(InstanceBusyError), locks.hold("instance-x"):
            pass  # another process holds it
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        deadline = time.monotonic() + 10
        while True:
            try:
                with locks.hold("instance-x"):
                    break
            except InstanceBusyError:
                assert time.monotonic() < deadline, "the dead holder's lock was never released"
                time.sleep(0.1)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_two_holders_in_one_process_exclude_each_other(engine: Engine) -> None:
    locks = locks_for(engine)
    with locks.hold("instance-y"):
        with pytest.raises(InstanceBusyError), locks_for(engine).hold("instance-y"):
            pass
        with locks.hold("instance-z"):
            pass  # other keys are free


def test_take_holds_the_free_keys_reports_the_busy_ones_and_frees_from_any_thread(
    engine: Engine,
) -> None:
    mine, theirs = locks_for(engine), locks_for(engine)  # two replicas, as far as locks go
    held = mine.take(["k1", "k2", "k1"])
    assert held.keys == {"k1", "k2"}
    assert not held.busy

    other = theirs.take(["k1", "k3"])
    assert other.keys == {"k3"}
    assert other.busy == {"k1"}
    assert mine.take(["k2"]).busy == {"k2"}, "a key held here is busy here too"

    releaser = threading.Thread(target=held.release, args=(["k1"],))
    releaser.start()
    releaser.join()
    again = theirs.take(["k1", "k2"])
    assert again.keys == {"k1"}
    assert again.busy == {"k2"}

    held.release()
    held.release(["k2"])  # once only: a second release frees nothing another holder took
    with theirs.take(["k2"]) as last:
        assert last.keys == {"k2"}
        with pytest.raises(InstanceBusyError), mine.hold("k2"):
            pass
    other.release()
    again.release()
    with mine.hold("k1"), mine.hold("k3"):
        pass  # everything was given back
