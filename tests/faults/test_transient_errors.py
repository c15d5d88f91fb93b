"""What the PostgreSQL restart test found: asyncpg reports "the database system is shutting
down / starting up" (SQLSTATE 57P03) as a plain DBAPIError, which was not taken for transient:
the services answered 500 instead of 503, and a consumer would have dead-lettered good events."""

from __future__ import annotations

import asyncpg
import pytest
from fangkong_common.bus.base import is_transient
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi


def wrapped(error: Exception) -> sa_exc.DBAPIError:
    """As SQLAlchemy hands it over when asyncpg fails to connect."""
    return sa_exc.DBAPIError("SELECT 1", {}, AsyncAdapt_asyncpg_dbapi.Error(str(error), error))


@pytest.mark.parametrize("error", [
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
])
def test_a_database_that_is_restarting_is_a_transient_error(error: Exception) -> None:
    assert is_transient(wrapped(error))


@pytest.mark.parametrize("error", [
    asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint"),
    asyncpg.exceptions.UndefinedTableError('relation "nope" does not exist'),
])
def test_a_bad_statement_is_not_transient(error: Exception) -> None:
    assert not is_transient(wrapped(error))


@pytest.mark.parametrize("error", [
    asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    asyncpg.exceptions.SerializationError("could not serialize access due to concurrent update"),
])
def test_a_deadlock_victim_is_retried_not_dead_lettered(error: Exception) -> None:
    # Two consumers of one group (the dashboard runs two) may lock the same rows: the loser retries.
    assert is_transient(wrapped(error))
