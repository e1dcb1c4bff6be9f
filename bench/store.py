"""The store's hot path alone: commands per second, CPU and statements per command, for no-op
provisions in this process, no broker, on SQLite and on PostgreSQL. Two ways:

    per command   what processing does for each delivery: outcome_of, hold the lock,
                  outcome_of again, start, record, free the lock
    batches       for --batch commands at once: outcomes_of, take the locks, start_many,
                  record_many, release

    .venv/bin/python -m bench.store [--commands N] [--batch B]

PostgreSQL needs the local stack's server (`python -m devstack up`); a scratch database is made
and dropped. Figures only: nothing is asserted.
"""

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import event
from sqlalchemy.engine import Engine

from bench.stack import postgres_database, provision_data
from handlers.catalog import command_catalog
from messages.amqp import AmqpProperties
from messages.commands import AnyCommand, InstanceCommand
from messages.events import Event, ProvisionedData, ProvisionedEvent, SecretReference
from messages.parsing import parse_command
from messages.publishing import build_command
from store.database import create_engine
from store.ledger import Ledger, Record, Started
from store.migrate import upgrade
from store.records import Outcome
from store.settings import StoreSettings

PROVISION = "odoo.instance.provision.v1"
STORES = ("sqlite", "postgresql")


def provisions(count: int) -> list[AnyCommand]:
    """`count` provisions of distinct instances, parsed as the consumer parses them."""
    commands = []
    for index in range(count):
        data = provision_data(str(uuid.uuid4()), f"s{index}-{uuid.uuid4().hex[:8]}")
        message = build_command(PROVISION, data, source="/bench")
        commands.append(parse_command(message.body, AmqpProperties()))
    return commands


def provisioned(command: AnyCommand) -> Event:
    """The no-op handler's answer."""
    assert isinstance(command, InstanceCommand)  # noqa: S101 - provisions only
    data = ProvisionedData(
        instance_id=command.subject,
        url="https://bench.example",
        internal_url="http://odoo.bench.svc.cluster.local:8069",
        odoo_version="17.0",
        credentials_secret=SecretReference(namespace="bench", name="none"),
    )
    return ProvisionedEvent.caused_by(command, data)


def one_by_one(ledger: Ledger, commands: Sequence[AnyCommand]) -> None:
    """Each command as processing handles a delivery today."""
    for command in commands:
        if ledger.outcome_of(command.id) is not None:
            continue
        with ledger.exclusive(command):
            if ledger.outcome_of(command.id) is not None:
                continue
            ledger.start(command)
            ledger.record(command, Outcome.SUCCEEDED, provisioned(command))


def in_batches(ledger: Ledger, commands: Sequence[AnyCommand], size: int) -> None:
    """`size` commands at a time: one statement or transaction per step for the batch."""
    for first in range(0, len(commands), size):
        batch = commands[first : first + size]
        answered = ledger.outcomes_of([c.id for c in batch])
        with ledger.locks.take(ledger.lock_key(c) for c in batch) as held:
            ready = [c for c in batch if c.id not in answered and ledger.lock_key(c) in held.keys]
            started = ledger.start_many(ready)
            done = [c for c, s in zip(ready, started, strict=True) if isinstance(s, Started)]
            ledger.record_many([Record(c, Outcome.SUCCEEDED, provisioned(c)) for c in done])


@contextmanager
def counting(engine: Engine) -> Iterator[list[int]]:
    """Counts the statements sent to the database meanwhile (an executemany counts once)."""
    count = [0]

    def seen(*_: Any) -> None:
        count[0] += 1

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield count
    finally:
        event.remove(engine, "before_cursor_execute", seen)


def measure(
    store_url: str, count: int, run: Callable[[Ledger, Sequence[AnyCommand]], None]
) -> dict[str, float]:
    """Commands per second, CPU ms and statements per command of `run` on a fresh store."""
    engine = create_engine(StoreSettings(url=SecretStr(store_url)))
    upgrade(engine)
    ledger = Ledger(engine, command_catalog().status_machine)
    run(ledger, provisions(20))  # warm: connections, compiled statements
    commands = provisions(count)
    with counting(engine) as statements:
        wall, cpu = time.perf_counter(), time.process_time()
        run(ledger, commands)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    answered = ledger.outcomes_of([c.id for c in commands])
    engine.dispose()
    if len(answered) != count:
        raise RuntimeError(f"only {len(answered)} of {count} commands were recorded")
    return {
        "per_second": count / wall,
        "cpu_ms": 1000 * cpu / count,
        "statements": statements[0] / count,
    }


def run(
    count: int, batch: int, stores: Sequence[str] = STORES
) -> dict[str, dict[str, dict[str, float]]]:
    """Both ways on these stores; figures by store, then by way."""
    ways: dict[str, Callable[[Ledger, Sequence[AnyCommand]], None]] = {
        "per command": one_by_one,
        f"batches of {batch}": lambda ledger, commands: in_batches(ledger, commands, batch),
    }
    results: dict[str, dict[str, dict[str, float]]] = {store: {} for store in stores}
    for way, how in ways.items():
        if "sqlite" in stores:
            with tempfile.TemporaryDirectory() as state:
                url = f"sqlite:///{Path(state) / 'state.db'}"
                results["sqlite"][way] = measure(url, count, how)
        if "postgresql" in stores:
            with postgres_database("bench_store") as url:
                results["postgresql"][way] = measure(url, count, how)
    return results


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    arguments = parser.parse_args()
    print(f"store only, {arguments.commands} no-op provisions, one thread")
    print(f"{'store':<11} {'way':<15} {'commands/s':>11} {'CPU ms/cmd':>11} {'stmts/cmd':>10}")
    for store, ways in run(arguments.commands, arguments.batch, arguments.stores).items():
        for way, figures in ways.items():
            print(
                f"{store:<11} {way:<15} {figures['per_second']:>11.1f} "
                f"{figures['cpu_ms']:>11.2f} {figures['statements']:>10.2f}"
            )


if __name__ == "__main__":
    main()
