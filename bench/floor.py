"""The floor under the service's throughput: plain pika and the same database doing a command's
bare minimum with the same guarantees, one message at a time and in batches.

Each loop consumes from a quorum queue, inserts a row (the inbox) and commits, publishes an event
to a quorum queue with the broker's acknowledgement, then acknowledges the command. One at a
time, that is a commit, a confirmed publish and an ack per message; batched, one commit for the
batch's rows, one broker transaction for its events and one multiple ack. SQLite runs as the store
does (WAL, synchronous FULL); PostgreSQL is the stack's. What the service does beyond this is
its own cost: `bench.overhead` divided by these figures says how much of the machine it leaves on
the table. Needs the local stack (`python -m devstack up`).

    .venv/bin/python -m bench.floor [--commands N] [--batch 50]
"""

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Protocol

import pika
import psycopg
from pika.adapters.blocking_connection import BlockingChannel
from psycopg import sql

from bench.stack import postgres_database, provisions, vhost

QUORUM = {"x-queue-type": "quorum"}
BATCH = 50
"""Messages per batch of the batched loop (one commit, one broker transaction, one ack)."""
COMMANDS, EVENTS = "floor.commands", "floor.events"


class Inbox(Protocol):
    """Rows written and committed by the loop (the store's part of a command)."""

    def add(self, rows: list[tuple[str, bytes]]) -> None:
        """Insert these rows and commit them."""

    def close(self) -> None:
        """Let go of the database."""


class SqliteInbox:
    """The inbox in a SQLite file, durable as the store's."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=FULL"):
            self.connection.execute(f"PRAGMA {pragma}")
        self.connection.execute("CREATE TABLE inbox (id TEXT PRIMARY KEY, body BLOB NOT NULL)")

    def add(self, rows: list[tuple[str, bytes]]) -> None:
        """Insert and commit (BEGIN IMMEDIATE, as the store writes)."""
        self.connection.execute("BEGIN IMMEDIATE")
        self.connection.executemany("INSERT INTO inbox VALUES (?, ?)", rows)
        self.connection.execute("COMMIT")

    def close(self) -> None:
        """Close the file."""
        self.connection.close()


class PostgresInbox:
    """The inbox in a PostgreSQL database."""

    def __init__(self, url: str, table: str) -> None:
        self.connection = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        self.insert = sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(sql.Identifier(table))
        with self.connection.transaction():
            self.connection.execute(
                sql.SQL("CREATE TABLE {} (id TEXT PRIMARY KEY, body BYTEA NOT NULL)").format(
                    sql.Identifier(table)
                )
            )

    def add(self, rows: list[tuple[str, bytes]]) -> None:
        """Insert and commit."""
        with self.connection.transaction(), self.connection.cursor() as cursor:
            cursor.executemany(self.insert, rows)

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def _declare(channel: BlockingChannel) -> None:
    for queue in (COMMANDS, EVENTS):
        channel.queue_declare(queue, durable=True, arguments=QUORUM)


def _fill(channel: BlockingChannel, count: int) -> None:
    channel.confirm_delivery()
    for message in provisions(count, "f"):
        properties = pika.BasicProperties(delivery_mode=2, message_id=message.properties.message_id)
        channel.basic_publish("", COMMANDS, message.body, properties)


Batch = list[tuple[int, str, bytes]]
"""Delivery tag, message id, body."""


def _consume(
    channel: BlockingChannel, count: int, batch: int, settle: Callable[[Batch], None]
) -> None:
    """Hand `settle` up to `batch` deliveries at a time until `count` are settled."""
    channel.basic_qos(prefetch_count=max(batch, 1) * 2)
    settled = 0
    waiting: Batch = []
    for method, properties, body in channel.consume(COMMANDS, inactivity_timeout=0.01):
        if method is not None:
            waiting.append((method.delivery_tag, properties.message_id, body))
        if waiting and (len(waiting) >= batch or method is None):
            settle(waiting)
            settled += len(waiting)
            waiting = []
            if settled >= count:
                break
    channel.cancel()


def one_at_a_time(channel: BlockingChannel, inbox: Inbox, count: int) -> None:
    """A commit, a confirmed publish and an ack per message."""
    channel.confirm_delivery()

    def settle(batch: Batch) -> None:
        for tag, message_id, body in batch:
            inbox.add([(message_id, body)])
            channel.basic_publish("", EVENTS, body, pika.BasicProperties(delivery_mode=2))
            channel.basic_ack(tag)

    _consume(channel, count, 1, settle)


def batched(channel: BlockingChannel, inbox: Inbox, count: int, size: int) -> None:
    """One commit, one broker transaction for the events and one multiple ack per batch."""
    channel.tx_select()

    def settle(batch: Batch) -> None:
        inbox.add([(message_id, body) for _tag, message_id, body in batch])
        for _tag, _message_id, body in batch:
            channel.basic_publish("", EVENTS, body, pika.BasicProperties(delivery_mode=2))
        channel.basic_ack(batch[-1][0], multiple=True)
        channel.tx_commit()  # the events and the ack, at once

    _consume(channel, count, size, settle)


@contextmanager
def _inboxes(store: str) -> Iterator[Callable[[str], Inbox]]:
    """A maker of named, empty inboxes on this store, all removed afterwards."""
    if store == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield lambda name: SqliteInbox(Path(directory) / f"{name}.db")
        return
    with postgres_database("bench_floor") as url:
        yield lambda name: PostgresInbox(url, f"inbox_{name}")


def measure(store: str, count: int, size: int) -> dict[str, float]:
    """Messages per second of both loops on this store."""
    figures: dict[str, float] = {}
    loops: dict[str, Callable[[BlockingChannel, Inbox], None]] = {
        "one_at_a_time": lambda channel, inbox: one_at_a_time(channel, inbox, count),
        "batched": lambda channel, inbox: batched(channel, inbox, count, size),
    }
    with _inboxes(store) as fresh_inbox:
        for name, loop in loops.items():
            with (
                vhost("bench-floor") as (_name, amqp_url),
                closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection,
            ):
                _declare(connection.channel())
                _fill(connection.channel(), count)
                inbox = fresh_inbox(name)
                try:
                    started = time.perf_counter()
                    loop(connection.channel(), inbox)
                    figures[name] = count / (time.perf_counter() - started)
                finally:
                    inbox.close()
    return figures


def run(count: int, size: int) -> dict[str, dict[str, float]]:
    """Both loops on both stores: messages per second by store and loop."""
    return {store: measure(store, count, size) for store in ("sqlite", "postgresql")}


def ratios(
    service: dict[str, dict[str, float]], floors: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """The service's no-op throughput (`bench.overhead`'s figures) as a fraction of each loop."""
    return {
        store: {loop: service[store]["per_second"] / rate for loop, rate in floors[store].items()}
        for store in floors
    }


def main() -> None:
    """Print messages per second of each loop on each store."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=BATCH)
    arguments = parser.parse_args()
    print(
        f"plain pika and the store's database, {arguments.commands} messages,"
        f" batches of {arguments.batch}"
    )
    print(f"{'store':<11} {'one at a time /s':>17} {'batched /s':>11}")
    for store, figures in run(arguments.commands, arguments.batch).items():
        print(f"{store:<11} {figures['one_at_a_time']:>17.1f} {figures['batched']:>11.1f}")


if __name__ == "__main__":
    main()
