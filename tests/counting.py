"""Every statement a connection sends, counted at the driver: the `round_trips` fixture."""
import sqlite3

import psycopg2
import psycopg2.extensions
import pytest

import models

STATEMENTS = []


class CountingSqliteCursor(sqlite3.Cursor):
    def execute(self, sql, *args):
        STATEMENTS.append(sql)
        return super().execute(sql, *args)


class CountingSqliteConnection(sqlite3.Connection):
    def cursor(self, factory=CountingSqliteCursor):
        return super().cursor(factory)


class CountingPgCursor(psycopg2.extensions.cursor):
    def execute(self, sql, args=None):
        STATEMENTS.append(sql)
        return super().execute(sql, args)


class CountingPgConnection(psycopg2.extensions.connection):
    def cursor(self, *args, **kwargs):
        kwargs.setdefault("cursor_factory", CountingPgCursor)
        return super().cursor(*args, **kwargs)


@pytest.fixture
def round_trips(app, database_url):
    """The statements each request sends, through a pool whose connections count them."""
    if database_url.startswith("sqlite"):
        options = {"factory": CountingSqliteConnection}
    else:
        options = {"connection_factory": CountingPgConnection}
    pool = models._pooled_database(database_url, 10, **options)
    models.database.initialize(pool)
    yield STATEMENTS
    pool.close_all()
    models.bind_database(database_url)
