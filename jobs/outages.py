"""Telling "the database went away" from "the data is bad" in what pg_dump and psql print.

A backup or restore Job whose database restarts, fails over, shuts down fast (every session ends
with SQLSTATE 57P01) or turns sessions away for a moment (53300, 57P03) can simply run again: a
backup keeps nothing until its archive is complete, a restore commits nothing until its script
has run. A failure about the data or the request (a corrupt dump, a missing table, a refused
password) fails the same way every time, so running it again only delays the answer.

pg_dump exits 1 and psql 2 for both kinds, and neither prints a SQLSTATE, so the only witness is
their error text: libpq's own messages (English, since the clients run with `LC_ALL=C`, see
`client_environment`) and the server's (in its `lc_messages`; a server set to another language
makes an outage that the client did not also notice look like a data failure, which is the safe
side: the Job fails as it did before retries existed). A session the server ends is noticed by
libpq in any language ("server closed the connection unexpectedly").
"""

import os
import re

_OUTAGE = re.compile(
    "|".join(
        (
            # Nobody listens (a restart, a failover), or the address does not resolve for now.
            r"connection to server .* failed: (Connection refused|No such file or directory"
            r"|Connection timed out|timeout expired|No route to host|Network is unreachable)",
            r"Temporary failure in name resolution",
            # 57P03: the server is starting, stopping or recovering.
            r"the database system is (starting up|shutting down|in recovery mode"
            r"|not yet accepting connections|not accepting connections)",
            # 53300: no session slot left for now.
            r"sorry, too many clients already|too many connections for (database|role)"
            r"|remaining connection slots are reserved",
            # An open session ended by the server: 57P01 (pg_terminate_backend, fast shutdown),
            # 57P02 (another backend crashed), the postmaster gone, or the connection lost.
            r"terminating connection (due to administrator command"
            r"|because of crash of another server process|due to unexpected postmaster exit)",
            r"server closed the connection unexpectedly|connection to server was lost",
            r"could not (receive data from|send data to) server|no connection to the server",
            r"SSL connection has been closed unexpectedly|SSL SYSCALL error: EOF detected",
            # 40001 and 40P01: conflicts that resolve themselves (a standby's replay, a lock).
            r"canceling statement due to conflict with recovery|could not serialize access"
            r"|deadlock detected",
        )
    )
)


def outage_in(output: str) -> str | None:
    """The line of a PostgreSQL client's error output that says the server went away, if any."""
    for line in output.splitlines():
        if _OUTAGE.search(line):
            return line.strip()
    return None


def client_environment(application: str) -> dict[str, str]:
    """The Job's environment for a PostgreSQL client: English messages, a named session.

    `application` becomes the session's application_name (unless PGAPPNAME is set), so a
    database administrator sees in pg_stat_activity which sessions are the service's Jobs.
    """
    environment = {key: value for key, value in os.environ.items() if key != "LANGUAGE"}
    environment["LC_ALL"] = "C"
    environment.setdefault("PGAPPNAME", application)
    return environment
