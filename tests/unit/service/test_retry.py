"""cbmir.service.retry: the wait after failed index writes."""
from cbmir.service.retry import Backoff


def test_backoff_doubles_up_to_a_minute_and_resets():
    backoff = Backoff()
    delays = [backoff.failed(OSError("full")) for _ in range(8)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.describe()["failed_attempts"] == 8 and backoff.waiting() > 0
    assert backoff.succeeded() == 8 and backoff.describe() is None and backoff.waiting() == 0


def test_each_store_names_the_write_errors_that_are_retried():
    import sqlite3

    import psycopg
    import psycopg_pool

    from cbmir.service.retry import is_store_error
    from cbmir.vectors.pg_store import PgStore
    from cbmir.vectors.store import Store

    assert is_store_error(sqlite3.OperationalError("database or disk is full"), Store)
    assert is_store_error(psycopg.OperationalError("connection refused"), PgStore)
    assert is_store_error(psycopg_pool.PoolTimeout("no connection"), PgStore)
    assert not is_store_error(psycopg.OperationalError("connection refused"), Store)
    assert not is_store_error(ValueError("a bug, not the disk"), Store)
    assert not is_store_error(ValueError("a bug, not the disk"), PgStore)
