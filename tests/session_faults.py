"""A database that goes away in the middle of a Job's work, at a moment the test chooses.

Stopping the stack's PostgreSQL would disturb every other test using it, so the outage is made
for one session only, the way a restart makes it for all: the test holds an exclusive lock on a
table the Job must read or replace, waits until the Job's session queues for it (it is then
connected, in its snapshot or its transaction, mid-work), and ends that session with
`pg_terminate_backend`, which sends the client what a fast shutdown sends every client: FATAL
57P01 "terminating connection due to administrator command". The lock is released afterwards, so
the next attempt finds the database as a restarted server would.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

WAIT_SECONDS = 120.0
"""Long enough for the Job controller, the scheduler and the job runner to start a pod."""


@contextmanager
def table_locked(conninfo: str, table: str) -> Iterator[None]:
    """Hold ACCESS EXCLUSIVE on `table` (as its owner) until the block ends."""
    with psycopg.connect(conninfo) as connection:
        connection.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table))
        )
        try:
            yield
        finally:
            connection.rollback()


@dataclass(frozen=True)
class EndedSession:
    """The session a test ended, as pg_stat_activity showed it."""

    application: str
    query: str
    """What it was running when it lost its database."""


def end_session_waiting(admin_url: str, database: str) -> EndedSession:
    """Wait until a session on `database` queues for a lock; end it as a fast shutdown would.

    The test holds the only lock a client waits for in a tenant's own database, so the client
    session that queues is the Job's (an autovacuum worker may queue too: it is no client).
    """
    deadline = time.monotonic() + WAIT_SECONDS
    with psycopg.connect(admin_url, autocommit=True) as admin:
        while True:
            found = admin.execute(
                "SELECT pid, application_name, query FROM pg_stat_activity "
                "WHERE datname = %s AND wait_event_type = 'Lock' "
                "AND backend_type = 'client backend'",
                (database,),
            ).fetchone()
            if found is not None:
                pid, application, query = found
                ended = admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
                assert ended == (True,), f"could not end session {pid}"
                return EndedSession(str(application), str(query))
            assert time.monotonic() < deadline, f"no session waited on a lock in {database}"
            time.sleep(0.05)
