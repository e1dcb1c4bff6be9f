"""Per-instance mutual exclusion for state-changing commands, across every replica.

A command holds its instance's key (or the fleet's) from before it is admitted until its
outcome is recorded; one that finds its key held is told to retry later (`InstanceBusyError`),
never dropped. `take(keys)` takes whatever keys of a batch are free in one go and reports the
busy ones, without waiting; the `Held` handle it returns releases them, all or some, from any
thread. `hold(key)` is the one-key form, a `with` block.

PostgreSQL: session-level advisory locks, all on ONE connection per `AdvisoryLocks` (one per
ledger, so one per process as the service is wired; a mutex serialises its use): one statement
takes a batch's keys, one frees them. The locks live as long as that connection's server
session, so a crashed process frees its keys.
The danger is the other way round: the session can end while the process still believes it
holds the keys (the server restarts or terminates the backend, a network cut ends in a reset).
PostgreSQL then frees the keys at once and another replica may take them, while this process's
handlers still run: exclusivity would be lost silently. So every key remembers the session
(backend pid) it was taken on, and the ledger **fences** each write with it (`fence`, in the
write's own transaction, just before it commits): keys whose session is known to be gone fail
at once; otherwise one query asks `pg_locks` whether that backend still holds them. A write
under a lost key fails as `LockLostError`, retryable: nothing is recorded, the delivery comes
back later and takes its key anew. The next `take` opens a new session; a key that was lost
stays taken in this process until its holder releases it, so no second holder here starts
meanwhile. What the fence cannot see is a session dying between its check and the commit: the
ledger's writers read instance rows `FOR UPDATE`, so whoever takes the key next waits in its
admission for that commit and then sees its outcome (a working status, or the recorded end).

SQLite: a byte per key of one lock file beside the database (`<database>.lock`), taken with
open-file-description locks, which exclude threads and processes on the machine alike and die
with their holder; such a lock cannot be lost while its file is open, so there is nothing to
fence. An in-memory database lives in one process: a set of keys guarded by a mutex.
"""

import fcntl
import hashlib
import os
import struct
import threading
import weakref
from collections.abc import Collection, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.types import BigInteger

from store.database import StoreInterruptedError, interrupted, is_postgresql

T = TypeVar("T")


class InstanceBusyError(Exception):
    """Another command holds this instance; retry later."""

    def __init__(self, key: str) -> None:
        super().__init__(f"instance {key} is busy with another command; retry later")
        self.key = key


class LockLostError(StoreInterruptedError):
    """The database session that held these keys ended: another replica may hold them now, so
    nothing was recorded; retry (the key is taken anew)."""


class Held:
    """Keys taken together (`keys`) and those that were busy (`busy`, not held).

    `release` frees all or some of them, from any thread, once each; as a `with` block it
    frees whatever is left at its end.
    """

    def __init__(
        self, owner: "KeyLocks[Any]", keys: Collection[str], busy: Collection[str]
    ) -> None:
        self.keys = frozenset(keys)
        self.busy = frozenset(busy)
        self._owner = owner
        self._left = set(self.keys)
        self._guard = threading.Lock()

    def release(self, keys: Iterable[str] | None = None) -> None:
        """Free these keys (None: every key still held); keys not held here are ignored."""
        with self._guard:
            freed = self._left if keys is None else self._left.intersection(keys)
            self._left = self._left - freed
        if freed:
            self._owner.free(freed)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class InstanceLocks(Protocol):
    """Keys held exclusively across threads, processes and replicas."""

    def take(self, keys: Iterable[str]) -> Held:
        """Take every free key at once; report the busy ones; never wait."""

    def hold(self, key: str) -> AbstractContextManager[None]:
        """Take one key for a `with` block or raise InstanceBusyError at once."""

    def fence(self, connection: Connection, keys: Iterable[str]) -> None:
        """Inside a write's transaction: raise LockLostError if any of these keys, held here,
        is no longer held in the database."""


def advisory_key(key: str) -> int:
    """A stable signed 64-bit number for a key (advisory locks take a bigint)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"instance-svc").digest()
    return int.from_bytes(digest, "big", signed=True)


class KeyLocks(Generic[T]):
    """What every lock kind shares: which keys this object holds (with what holds each: an
    open file, the database session), taken and freed under one mutex. A key held here is
    busy for everyone else here too, whatever the database says."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held: dict[str, T] = {}

    def take(self, keys: Iterable[str]) -> Held:
        """Take every free key at once; report the busy ones; never wait."""
        wanted = list(dict.fromkeys(keys))
        with self._mutex:
            free = [key for key in wanted if key not in self._held]
            taken = self._acquire(free) if free else {}
            self._held.update(taken)
        return Held(self, taken, [key for key in wanted if key not in taken])

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Take one key for a `with` block or raise InstanceBusyError at once."""
        with self.take([key]) as held:
            if key not in held.keys:
                raise InstanceBusyError(key)
            yield

    def free(self, keys: Iterable[str]) -> None:
        """Give keys back (what `Held.release` calls)."""
        with self._mutex:
            tokens = {key: self._held.pop(key) for key in keys if key in self._held}
            if tokens:
                self._release(tokens)

    def fence(self, connection: Connection, keys: Iterable[str]) -> None:
        """Nothing to check: these locks cannot be lost while their holder lives."""

    def _acquire(self, keys: list[str]) -> dict[str, T]:
        """Try these keys (none held here); the taken ones, with what holds each."""
        raise NotImplementedError

    def _release(self, tokens: dict[str, T]) -> None:
        """Free keys `_acquire` took (called with the mutex held)."""


@dataclass(eq=False)
class _Session:
    """One server session of the lock connection: the backend that holds its keys."""

    pid: int
    lost: bool = False


_KEYS = bindparam("keys", type_=ARRAY(BigInteger))
_TAKE = text("SELECT k FROM unnest(:keys) AS k WHERE pg_try_advisory_lock(k)").bindparams(_KEYS)
_FREE = text("SELECT count(*) FROM unnest(:keys) AS k WHERE pg_advisory_unlock(k)").bindparams(
    _KEYS
)
# A bigint advisory key shows in pg_locks as its high half (classid) and low half (objid).
_STILL_HELD = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
    " AND pid = :pid AND ((classid::bigint << 32) | objid::bigint) = ANY(:keys)"
).bindparams(_KEYS)


class _Line:
    """The lock connection and its current session (apart from AdvisoryLocks, so that a
    finalizer can close it when its owner goes)."""

    def __init__(self) -> None:
        self.connection: Connection | None = None
        self.session: _Session | None = None

    def drop(self, session: _Session) -> None:
        """Mark a session lost and, if it is the current one, close its connection for good."""
        session.lost = True
        if session is self.session and self.connection is not None:
            connection, self.connection, self.session = self.connection, None, None
            try:
                connection.invalidate()
                connection.close()
            except DBAPIError:
                pass  # already broken: nothing more to close

    def close(self) -> None:
        """End the current session, if any (the server frees its keys)."""
        if self.session is not None:
            self.drop(self.session)


class AdvisoryLocks(KeyLocks[_Session]):
    """PostgreSQL session advisory locks, every key on one connection (see the module's
    docstring for what happens when its session ends)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self._line = _Line()
        weakref.finalize(self, self._line.close)

    @property
    def backend_pid(self) -> int | None:
        """The server process of the lock session (None: no session open)."""
        session = self._line.session
        return session.pid if session is not None else None

    def _acquire(self, keys: list[str]) -> dict[str, _Session]:
        connection, session = self._open()
        numbers = {advisory_key(key): key for key in keys}
        try:
            taken = connection.execute(_TAKE, {"keys": list(numbers)}).scalars().all()
            connection.commit()
        except DBAPIError as error:
            self._line.drop(session)
            raise _interrupted(error) from error
        return {numbers[number]: session for number in taken}

    def _release(self, tokens: dict[str, _Session]) -> None:
        current, connection = self._line.session, self._line.connection
        live = [advisory_key(key) for key, session in tokens.items() if session is current]
        if current is None or connection is None or not live:
            return  # the session that held them is gone, and its locks with it
        try:
            connection.execute(_FREE, {"keys": live})
            connection.commit()
        except DBAPIError:
            # A broken session cannot unlock; ending it frees every key it held, so the
            # other holders' keys are lost too, and their next write is fenced off.
            self._line.drop(current)

    def fence(self, connection: Connection, keys: Iterable[str]) -> None:
        """Raise LockLostError unless every one of these keys held here is still held by the
        session it was taken on (asked in the caller's transaction: one query)."""
        with self._mutex:
            mine = {key: self._held[key] for key in keys if key in self._held}
        by_session: dict[_Session, list[int]] = {}
        for key, session in mine.items():
            by_session.setdefault(session, []).append(advisory_key(key))
        for session, numbers in by_session.items():
            if not session.lost:
                found = connection.execute(_STILL_HELD, {"pid": session.pid, "keys": numbers})
                if found.scalar_one() == len(numbers):
                    continue
                with self._mutex:
                    self._line.drop(session)
            raise LockLostError(
                "the database session holding the instance locks ended; nothing was recorded"
            )

    def close(self) -> None:
        """End the lock session: the server frees every key it holds."""
        with self._mutex:
            self._line.close()
            self._held.clear()

    def _open(self) -> tuple[Connection, _Session]:
        """The lock connection and its session, opened anew if there is none."""
        if self._line.connection is not None and self._line.session is not None:
            return self._line.connection, self._line.session
        try:
            connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except OperationalError as error:
            raise interrupted(error) from error
        # libpq knows its backend's pid from the handshake: no round trip to ask it.
        pid = connection.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
        self._line.connection, self._line.session = connection, _Session(int(pid))
        return connection, self._line.session


def _interrupted(error: DBAPIError) -> StoreInterruptedError:
    """The retryable form of a driver error on the lock connection."""
    reason = str(error.orig or error).splitlines()[0]
    return StoreInterruptedError(f"state database unavailable: {reason}")


class FileLocks(KeyLocks[int]):
    """A byte per key of one file beside the SQLite database, locked with open-file-description
    locks (fcntl `F_OFD_SETLK`): across threads and processes.

    The file is opened once; a key is the byte at an offset drawn from its hash, so taking one
    is a single system call, with no file created per instance. Open-file-description locks
    belong to the open file (not to the process, as classic POSIX record locks do), so two
    `FileLocks` in one process exclude each other as two processes do; a dead holder's locks go
    with its descriptor.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._descriptor: int | None = None

    def _file(self) -> int:
        if self._descriptor is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            weakref.finalize(self, os.close, descriptor)
            self._descriptor = descriptor
        return self._descriptor

    def _acquire(self, keys: list[str]) -> dict[str, int]:
        descriptor = self._file()
        taken: dict[str, int] = {}
        for key in keys:
            offset = _byte_of(key)
            try:
                fcntl.fcntl(descriptor, fcntl.F_OFD_SETLK, _flock(fcntl.F_WRLCK, offset))
            except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: held elsewhere
                continue
            taken[key] = offset
        return taken

    def _release(self, tokens: dict[str, int]) -> None:
        descriptor = self._file()
        for offset in tokens.values():
            fcntl.fcntl(descriptor, fcntl.F_OFD_SETLK, _flock(fcntl.F_UNLCK, offset))


def _byte_of(key: str) -> int:
    """Where a key's byte is: 56 bits of its hash (two keys sharing one would only make one of
    them wait, never let both in)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:7], "big")


def _flock(kind: int, offset: int) -> bytes:
    """Linux's `struct flock` for one byte at `offset` (l_pid 0, as OFD locks require)."""
    return struct.pack("hhqqi4x", kind, os.SEEK_SET, offset, 1, 0)


class ProcessLocks(KeyLocks[None]):
    """Locks inside one process, for the single consumer process SQLite supports."""

    def _acquire(self, keys: list[str]) -> dict[str, None]:
        return dict.fromkeys(keys)


def locks_for(engine: Engine) -> InstanceLocks:
    """The lock kind that fits the store's database."""
    if is_postgresql(engine):
        return AdvisoryLocks(engine)
    database = engine.url.database
    if database and database != ":memory:":
        return FileLocks(Path(f"{database}.lock"))
    return ProcessLocks()  # an in-memory database lives in one process anyway
