"""Which client errors mean "the database went away" (run the Job again) and which do not.

The texts are what pg_dump and psql 15 printed (LC_ALL=C) against a real PostgreSQL 15: stopped,
shut down fast mid-dump, a session ended with pg_terminate_backend, a database at its connection
limit; and the failures that must stay failures.
"""

import pytest

from jobs.outages import client_environment, outage_in

TERMINATED = (
    "pg_dump: error: query failed: FATAL:  terminating connection due to administrator command\n"
    "server closed the connection unexpectedly\n"
    "\tThis probably means the server terminated abnormally\n"
    "\tbefore or while processing the request.\n"
    "pg_dump: detail: Query was: LOCK TABLE public.b IN ACCESS SHARE MODE"
)
PSQL_TERMINATED = (
    "FATAL:  terminating connection due to administrator command\n"
    "server closed the connection unexpectedly\n"
    "\tThis probably means the server terminated abnormally\n"
    "\tbefore or while processing the request.\n"
    "connection to server was lost"
)
OUTAGES = {
    "stopped (TCP)": 'pg_dump: error: connection to server at "127.0.0.1", port 55999 failed: '
    "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
    "stopped (socket)": 'pg_dump: error: connection to server on socket "/run/.s.PGSQL.5432" '
    "failed: No such file or directory\n\tIs the server running locally and accepting "
    "connections on that socket?",
    "fast shutdown or pg_terminate_backend mid-dump": TERMINATED,
    "the same, under psql": PSQL_TERMINATED,
    "shutting down": 'psql: error: connection to server at "db", port 5432 failed: FATAL:  the '
    "database system is shutting down",
    "starting up": 'pg_dump: error: connection to server at "db", port 5432 failed: FATAL:  the '
    "database system is starting up",
    "connection limit": 'pg_dump: error: connection to server at "127.0.0.1", port 55999 failed: '
    'FATAL:  too many connections for database "t"',
    "no slot left": 'pg_dump: error: connection to server at "db", port 5432 failed: FATAL:  '
    "sorry, too many clients already",
    "name service down": 'pg_dump: error: could not translate host name "db" to address: '
    "Temporary failure in name resolution",
}
FAILURES = {
    "wrong password": 'pg_dump: error: connection to server at "127.0.0.1", port 55432 failed: '
    'FATAL:  password authentication failed for user "odoo_x"',
    "no such database": 'pg_dump: error: connection to server at "127.0.0.1", port 55999 failed: '
    'FATAL:  database "nodb" does not exist',
    "not allowed to log in": 'pg_dump: error: connection to server at "127.0.0.1", port 55999 '
    'failed: FATAL:  role "t" is not permitted to log in',
    "corrupt table": 'pg_dump: error: Dumping the contents of table "partner" failed: '
    "PQgetResult() failed.\npg_dump: detail: Error message from server: ERROR:  invalid page in "
    "block 0 of relation base/16384/16385",
    "bad script": 'psql:<stdin>:42: ERROR:  relation "partner" already exists',
    "permission": "pg_dump: error: query failed: ERROR:  permission denied for table secrets",
}


@pytest.mark.parametrize("output", OUTAGES.values(), ids=OUTAGES.keys())
def test_the_database_going_away_is_an_outage(output: str) -> None:
    line = outage_in(output)
    assert line is not None
    assert line in output


@pytest.mark.parametrize("output", FAILURES.values(), ids=FAILURES.keys())
def test_a_failure_of_the_data_or_the_request_is_not(output: str) -> None:
    assert outage_in(output) is None


def test_the_line_that_names_the_outage_is_the_first_one() -> None:
    assert outage_in(TERMINATED) == (
        "pg_dump: error: query failed: FATAL:  terminating connection due to administrator command"
    )


def test_clients_speak_english_and_name_their_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("LANGUAGE", "de")
    monkeypatch.delenv("PGAPPNAME", raising=False)
    environment = client_environment("instance-service backup")
    assert environment["LC_ALL"] == "C"
    assert "LANGUAGE" not in environment
    assert environment["PGAPPNAME"] == "instance-service backup"
    monkeypatch.setenv("PGAPPNAME", "chosen by the operator")
    assert client_environment("instance-service backup")["PGAPPNAME"] == "chosen by the operator"
