"""Per-instance mutual exclusion for state-changing commands, across every replica.

PostgreSQL: a session-level advisory lock on a connection held for the command's duration; a
crashed holder's connection closes and the lock goes with it. SQLite: an flock(2) on a file per
instance beside the database, which excludes threads and processes on the machine alike and dies
with its holder. Either way a command that finds its instance held is told to retry later
(`InstanceBusyError`), never dropped.
"""

import fcntl
import hashlib
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from store.database import interrupted, is_postgresql


class InstanceBusyError(Exception):
    """Another command holds this instance; retry later."""

    def __init__(self, key: str) -> None:
        super().__init__(f"instance {key} is busy with another command; retry later")
        self.key = key


class InstanceLocks(Protocol):
    """Hold one key exclusively for the duration of a `with` block."""

    def hold(self, key: str) -> AbstractContextManager[None]:
        """Take the key's lock or raise InstanceBusyError at once."""


def advisory_key(key: str) -> int:
    """A stable signed 64-bit number for a key (advisory locks take a bigint)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"instance-svc").digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLocks:
    """PostgreSQL advisory locks, one pooled connection per held key."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Try the lock; raise InstanceBusyError if another session has it."""
        number = advisory_key(key)
        try:
            connection = self.engine.connect()
        except OperationalError as error:
            raise interrupted(error) from error
        with connection:
            try:
                taken = connection.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": number}
                ).scalar_one()
                connection.commit()  # the lock is the session's, not the transaction's
            except OperationalError as error:
                raise interrupted(error) from error
            if not taken:
                raise InstanceBusyError(key)
            try:
                yield
            finally:
                try:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": number})
                    connection.commit()
                except SQLAlchemyError:
                    # A broken session cannot unlock; closing it for good frees the lock.
                    connection.invalidate()


class FileLocks:
    """flock(2) on one file per key beside the SQLite database: across threads and processes.

    Each `hold` opens the file anew, and flock locks belong to the open file, so two holders
    in one process exclude each other as two processes do; a dead holder's lock goes with it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Try the key's lock; raise InstanceBusyError if anyone holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        with (self.directory / name).open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InstanceBusyError(key) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class ProcessLocks:
    """Locks inside one process, for the single consumer process SQLite supports."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: set[str] = set()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Take the key if no other thread has it; raise InstanceBusyError otherwise."""
        with self._guard:
            if key in self._held:
                raise InstanceBusyError(key)
            self._held.add(key)
        try:
            yield
        finally:
            with self._guard:
                self._held.discard(key)


def locks_for(engine: Engine) -> InstanceLocks:
    """The lock kind that fits the store's database."""
    if is_postgresql(engine):
        return AdvisoryLocks(engine)
    database = engine.url.database
    if database and database != ":memory:":
        return FileLocks(Path(f"{database}.locks"))
    return ProcessLocks()  # an in-memory database lives in one process anyway
