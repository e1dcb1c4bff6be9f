"""PostgreSQL: a unit of work whose connection the server ends after its last read (a restart, an
operator's pg_terminate_backend) fails as a retryable interruption, never as an unexpected
error. A read-only unit ends with a ROLLBACK, and that is where it meets the dropped connection
(the PostgreSQL restart fault test found it: "unexpected failure; will retry" from a handler's
read of its operation)."""

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from messages.errors import RetryableError
from store.database import StoreInterruptedError, traced_session
from store.models import Instance

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url(postgres_database: str) -> str:
    """PostgreSQL only (conftest's `engine` migrates it)."""
    return postgres_database


@pytest.mark.parametrize("write", [False, True], ids=["read", "write"])
def test_a_connection_ended_after_the_last_statement_is_an_interruption(
    engine: Engine, postgres_database: str, write: bool
) -> None:
    with (  # noqa: PT012 - the error comes from the end of the unit, after these statements
        pytest.raises(StoreInterruptedError, match="terminating connection") as raised,
        traced_session(engine, "operation", write=write) as session,
    ):
        assert session.scalars(select(Instance)).all() == []
        pid = session.scalar(text("SELECT pg_backend_pid()"))
        with psycopg.connect(postgres_database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert isinstance(raised.value, RetryableError)
    with traced_session(engine, "operation") as session:  # the pool hands out a live one next
        assert session.scalars(select(Instance)).all() == []
