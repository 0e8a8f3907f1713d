"""The connection pool's check-out and check-in (lean_pool.py, over peewee's pool), on the backend under test."""
import os
import threading
import time

import peewee
import psycopg2
import pytest
from playhouse.pool import MaxConnectionsExceeded

import lean_pool
import models
from conftest import SESSION_ID, chat_url, error_body

ON_POSTGRESQL = os.environ.get("TEST_DATABASE_URL", "").startswith("postgres")


@pytest.fixture
def pool(app, database_url):
    """A pool of two connections of its own (the app's stays as it is), closed after the test."""
    pool = models._pooled_database(database_url, 2)
    yield pool
    pool.close_all()


def _raw(pool):
    with pool.connection_context():
        return pool.connection()


def test_a_connection_given_back_is_taken_again(pool):
    first = _raw(pool)
    assert _raw(pool) is first
    assert len(pool._connections) == 1 and not pool._in_use


def test_two_at_once_are_two_connections_then_both_idle(pool):
    with pool.connection_context():
        outer = pool.connection()
        taken = []
        thread = threading.Thread(target=lambda: taken.append(_raw(pool)))
        thread.start()
        thread.join()
    assert taken[0] is not outer
    assert len(pool._connections) == 2 and not pool._in_use


def test_a_connection_the_server_closed_is_dropped_at_check_out(pool, database_url):
    dropped = _raw(pool)
    if ON_POSTGRESQL:
        with psycopg2.connect(database_url) as other, other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [dropped.get_backend_pid()])
        deadline = time.monotonic() + 5
        while not _server_closed(dropped) and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        dropped.close()
    with pool.connection_context():
        assert pool.connection() is not dropped
        assert pool.execute_sql("SELECT 1").fetchone() == (1,)


def _server_closed(connection):
    try:
        connection.cursor().execute("SELECT 1")
    except psycopg2.Error:
        return True
    return False


def test_a_connection_past_its_stale_timeout_is_closed_not_reused(pool):
    first = _raw(pool)
    pool._stale_timeout = 0.05
    time.sleep(0.1)
    assert _raw(pool) is not first
    assert pool._is_closed(first)


def test_a_connection_left_inside_a_transaction_is_rolled_back_before_reuse(pool):
    if not ON_POSTGRESQL:
        pytest.skip("PostgreSQL's transaction status; SQLite's pool reuses any connection")
    with pool.connection_context():
        first = pool.connection()
        pool.execute_sql("BEGIN")  # a transaction peewee doesn't know of
        pool.execute_sql("CREATE TEMPORARY TABLE abandoned (x integer)")
    assert first.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    with pool.connection_context():
        assert pool.connection() is first
        assert pool.execute_sql("SELECT to_regclass('pg_temp.abandoned')").fetchone() == (None,)


def test_closing_inside_a_transaction_is_refused_and_keeps_the_connection(pool):
    pool.connect()
    try:
        with pool.atomic():
            with pytest.raises(peewee.OperationalError, match="transaction is open"):
                pool.close()
            assert not pool.is_closed()
    finally:
        pool.close()
    assert pool.is_closed() and not pool._in_use


def test_a_full_pool_waits_then_gives_up(pool):
    pool._wait_timeout = 0.2
    held, release, errors = threading.Event(), threading.Event(), []

    def hold_one():
        with pool.connection_context():
            held.set()
            release.wait(10)

    def want_one():
        try:
            with pool.connection_context():
                pass
        except MaxConnectionsExceeded as error:
            errors.append(error)
    # Both of the pool's connections are out (one here, one in another thread): a third thread waits, then fails.
    with pool.connection_context():
        holder = threading.Thread(target=hold_one)
        holder.start()
        held.wait(10)
        started = time.monotonic()
        wanting = threading.Thread(target=want_one)
        wanting.start()
        wanting.join()
        waited = time.monotonic() - started
        release.set()
        holder.join()
    assert len(errors) == 1 and 0.15 < waited < 5
    assert not pool._in_use and len(pool._connections) == 2


def test_a_request_that_finds_every_connection_busy_is_503(make_app, headers, orgs, monkeypatch, database_url):
    monkeypatch.setattr(models, "POOL_WAIT_SECONDS", 0.2)
    monkeypatch.setattr(models, "_pools", {})
    app = make_app(DB_POOL_SIZE="1")
    busy, release = threading.Event(), threading.Event()

    def hold_the_only_connection():
        with models.database.connection_context():
            models.database.execute_sql("SELECT 1")
            busy.set()
            release.wait(10)
    holder = threading.Thread(target=hold_the_only_connection)
    holder.start()
    try:
        busy.wait(10)
        response = app.test_client().get(chat_url(SESSION_ID), headers=headers)
    finally:
        release.set()
        holder.join()
    assert response.status_code == 503
    assert response.get_json() == error_body("unavailable", "every database connection is busy; try again shortly")
    models._pools[database_url].close_all()


def test_the_state_written_at_check_out_and_in_is_peewees_own(pool):
    """lean_pool writes peewee's connection state directly: the same fields set_connection and reset write."""
    state = peewee._ConnectionState()
    state.set_connection("connection")
    assert vars(state) == lean_pool.opened_state("connection")
    state.reset()
    assert vars(state) == lean_pool.closed_state()
