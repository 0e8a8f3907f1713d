"""The database binding, the tables, and the few queries that need care.

The database object is created once and bound late (`bind_database`), so
importing this module never connects: gunicorn forks its workers after import.
"""
import datetime
import os
import secrets
import threading
import time
from urllib.parse import urlsplit

import peewee
from peewee import (BigAutoField, BigIntegerField, BooleanField, CharField, DatabaseProxy, DateTimeField,
                    ForeignKeyField, IntegerField, InterfaceError, Model, OperationalError, TextField)
from playhouse import db_url
from playhouse.migrations import Runner
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from store import prepared

database = DatabaseProxy()
MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
# The driver's errors as peewee's, as execute_sql gives them, for statements sent on the driver directly.
DRIVER_ERRORS_AS_PEEWEE = peewee.ExceptionWrapper(peewee.EXCEPTIONS)
# Chats with no message sort after every real timestamp (newest first).
NO_MESSAGE_SORT_AT = -(2 ** 63)
SQLITE_BUSY_TIMEOUT_MS = 5000   # how long a write waits for another's, in all
SQLITE_BUSY_SLICE_MS = 5        # how long SQLite itself blocks at a time (see CooperativeSqliteDatabase)
DEFAULT_POOL_SIZE = 10          # connections per worker process (DB_POOL_SIZE)
POOL_WAIT_SECONDS = 10          # how long a request waits for a free one before failing with 503
CURSOR_SECRET_SETTING = "cursor_secret"


def bind_database(url, pool_size=DEFAULT_POOL_SIZE):
    """Bind the models to the database the URL names; one pool per URL per process."""
    if url not in _pools:
        _pools[url] = _pooled_database(url, pool_size)
    database.initialize(_pools[url])
    return _pools[url]


_pools = {}


def _pooled_database(url, pool_size, **driver_options):
    # No connection is opened here: a request checks one out with its first statement that needs one
    # (peewee's autoconnect) and gives it back at its end (app.close_database). A request beyond pool_size
    # waits for a free connection (POOL_WAIT_SECONDS), so a worker holding a thousand greenlets never opens
    # a thousand database connections.
    parts = urlsplit(url)
    common = {"max_connections": pool_size, "timeout": POOL_WAIT_SECONDS,
              "stale_timeout": 300}
    if parts.scheme == "sqlite":
        path = (parts.path[1:] if parts.path.startswith("/") else parts.path) or "chatstore.db"
        connection_options = {"pragmas": {"journal_mode": "wal", "foreign_keys": 1,
                                          "busy_timeout": SQLITE_BUSY_SLICE_MS, "synchronous": "normal"},
                              "check_same_thread": False, **driver_options}
        # Every write transaction takes the write lock up front, so two writers queue instead of deadlocking
        # on upgrade.
        return CooperativeSqliteDatabase(path, reads=SqliteReadConnection(path, **connection_options),
                                         lock_type="IMMEDIATE", **common, **connection_options)
    # postgres:// (Heroku's spelling) and postgresql:// alike.
    return ReconnectingPostgresqlDatabase(**db_url.parse(url, unquote_password=True, unquote_user=True),
                                          connect_timeout=3, **common, **driver_options)


class UnpingedPsycopg2Adapter(peewee.Psycopg2Adapter):
    """peewee's psycopg2 adapter without the `SELECT 1` its liveness check sends for every connection the pool
    hands out: an idle connection is taken at the driver's word (ReconnectingPostgresqlDatabase says why)."""

    def is_connection_closed(self, conn):
        if self.txn_status(conn) == self.txn_idle:
            return bool(conn.closed)  # the driver's own flags: no round trip
        return super().is_connection_closed(conn)  # lost, or left in a transaction: peewee's own check


class ReconnectingPostgresqlDatabase(prepared.PreparedReads, PooledPostgresqlDatabase):
    """PostgreSQL connections handed out without a ping; a read on a connection the server dropped is retried.
    The hot reads run as prepared statements (prepared.py).

    peewee's pool sends `SELECT 1` on every connection it hands out, a round
    trip per request for the rare connection a database restart has dropped.
    Here a connection is handed out when the driver does not already know it
    closed, and when a read fails because the server has gone from under it,
    the pool's idle connections (from before the restart too) are dropped and
    the read runs once more on a fresh connection. Only a read outside a
    transaction is retried, so nothing is ever written twice; a write in a
    request comes after that request's first read, which has already replaced a
    dropped connection.

    The pool is peewee's as it is: the driver adapter it consults is chosen by
    `psycopg2_adapter`, a class attribute of peewee's PostgreSQL database, and
    a dropped connection is replaced with the pool's public API (manual_close,
    close_idle, connect).
    """

    psycopg2_adapter = UnpingedPsycopg2Adapter

    def execute_sql(self, sql, params=None):
        try:
            return super().execute_sql(sql, params)
        except (OperationalError, InterfaceError):
            if not self._dropped_under_a_read(sql):
                raise
        self._replace_dropped_connection()
        return super().execute_sql(sql, params)

    def _replace_dropped_connection(self):
        # A new connection for this request (or connection_context), which goes on with it.
        self.manual_close()  # the dropped one, never back into the pool
        self.close_idle()  # connections made before the restart are gone too
        self.connect()

    def _dropped_under_a_read(self, sql):
        return (prepared.is_read(sql) and not self.in_transaction()
                and not self.is_closed() and self.connection().closed != 0)


class CooperativeSqliteDatabase(PooledSqliteDatabase):
    """SQLite whose hot reads share the process's read connection, and whose write transactions wait for the
    write lock in Python, sleeping in between tries.

    SQLite's own busy handler sleeps inside C, a millisecond at least, where
    gevent can't switch: two workers taking turns at the write lock would
    stall each other's every request at each collision, and one request
    waiting out another process's write (a long import, say) would stall every
    request of its worker. Here BEGIN IMMEDIATE is tried with no busy wait at
    all, and `time.sleep` (gevent's, under gunicorn) lets the others run
    between tries, up to SQLITE_BUSY_TIMEOUT_MS in all. Other statements keep
    the short busy wait (SQLITE_BUSY_SLICE_MS); WAL readers never wait for writers.
    """

    def __init__(self, database, reads, **kwargs):
        super().__init__(database, **kwargs)
        self.reads = reads  # a SqliteReadConnection to the same file

    def execute_read(self, sql, params):
        """A hot read's rows: on the process's read connection (SqliteReadConnection), or inside a write's
        transaction on the request's own connection, which sees the transaction's rows."""
        if self.in_transaction():
            return self.execute_sql(sql, params).fetchall()
        return self.reads.rows(sql, params)

    def close_all(self):
        """Every connection of this database, the read connection's too (gunicorn's master, before it forks)."""
        super().close_all()
        self.reads.close()

    def begin(self, lock_type=None):
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        pause = 0.0001
        connection = self.connection()
        connection.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    return super().begin(lock_type)
                except OperationalError as error:
                    if "locked" not in str(error) or time.monotonic() >= deadline:
                        raise
                time.sleep(pause)
                pause = min(pause * 2, 0.005)
        finally:
            connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_SLICE_MS}")


class SqliteReadConnection:
    """SQLite's hot reads: one read-only connection per process, shared by its requests.

    A hot read (store/reads.py, pages.py, feed.py) is one SELECT outside any
    transaction. On SQLite that is a function call that never waits on a
    socket: under gevent no other request runs while it does, and it leaves
    nothing open behind it (its rows are fetched whole). So a worker's requests
    need no connection of their own to read: they share this one, and a GET of
    a chat checks nothing out of the pool. (A checkout and check-in of peewee's
    pool cost 15 µs a request under gevent, whose locks are Python's: 15% of a
    GET of one chat, in-process.)

    It is peewee's SqliteDatabase with `thread_safe=False` (one connection
    state for the process, not one per greenlet) and `query_only` on, so
    nothing writes through it. A lock makes it safe under real threads too
    (`flask run`, gthread workers), which take turns; under gevent nobody waits
    for it, since a read does not yield. Each statement sees every commit made
    before it began (WAL), on whichever connection.
    """

    def __init__(self, path, pragmas, **connect_options):
        self.path, self.pragmas, self.connect_options = path, {**pragmas, "query_only": 1}, connect_options
        self.lock, self.database = threading.Lock(), self._new_database()
        # SQLite's rule for fork(): a connection opened before it is not used after it in the child, not even to
        # be closed (its locks are the parent's). A child starts its own and keeps the inherited one, untouched.
        self.inherited = []
        os.register_at_fork(after_in_child=self._start_afresh)

    def _new_database(self):
        return peewee.SqliteDatabase(self.path, pragmas=self.pragmas, thread_safe=False, **self.connect_options)

    def _start_afresh(self):
        self.inherited.append(self.database)
        self.lock, self.database = threading.Lock(), self._new_database()

    def rows(self, sql, params):
        """A SELECT's rows, fetched whole."""
        with self.lock, DRIVER_ERRORS_AS_PEEWEE:
            return self.database.connection().cursor().execute(sql, params).fetchall()

    def connection(self):
        """The driver's connection, opened if need be (tests make SQLite misbehave on it)."""
        with self.lock:
            return self.database.connection()

    def close(self):
        with self.lock:
            self.database.close()


def migrate():
    """Create or upgrade the schema and the stored cursor secret; safe to repeat."""
    with database.connection_context():
        Runner(database.obj, MIGRATIONS_DIR).up()
        # The first host to get here wins; the others keep its secret.
        with database.atomic():
            (Setting.insert(name=CURSOR_SECRET_SETTING, value=secrets.token_hex(32))
             .on_conflict_ignore().execute())


def on_postgresql():
    return isinstance(database.obj, peewee.PostgresqlDatabase)


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Org(BaseModel):
    id = CharField(primary_key=True, max_length=255)
    name = TextField()
    created_at = DateTimeField(default=now_utc)


class Session(BaseModel):
    id = CharField(primary_key=True, max_length=26)
    org = ForeignKeyField(Org, on_delete="CASCADE")
    name = TextField(null=True)
    phone = TextField(null=True)
    created_at = DateTimeField(default=now_utc)
    # The counter of the session's change order until migration 0003; no longer written (change_order.py
    # draws positions without writing the session row), kept so databases that had it keep their schema.
    change_seq = BigIntegerField(default=0)
    # The position of the newest tombstone purged: a `since` before it may have missed a deletion.
    purged_seq = BigIntegerField(default=0)


class ApiKey(BaseModel):
    org = ForeignKeyField(Org, on_delete="CASCADE")
    name = TextField(null=True)
    digest = CharField(unique=True, max_length=64)
    capabilities = TextField()
    created_at = DateTimeField(default=now_utc)
    last_used_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)
    # Unix epoch milliseconds, as the API gives it; null: the key does not expire (migration 0004).
    expires_at = BigIntegerField(null=True)


class Chat(BaseModel):
    id = BigAutoField()
    session = ForeignKeyField(Session, on_delete="CASCADE")
    jid = TextField()
    type = CharField(max_length=16)
    name = TextField(null=True)
    last_message_at = BigIntegerField(null=True)
    # last_message_at with NULL mapped below every timestamp: a NOT NULL key
    # lets one row-value comparison walk the display index on both backends.
    sort_at = BigIntegerField(default=NO_MESSAGE_SORT_AT)
    unread_count = IntegerField(default=0)
    archived = BooleanField(default=False)
    pinned = BooleanField(default=False)
    muted_until = BigIntegerField(null=True)
    # Where the chat's last write put it in the session's change order, and who wrote it.
    change_seq = BigIntegerField(default=0)
    changed_by = CharField(max_length=4, default="sync")


class ChatTombstone(BaseModel):
    """A deleted chat, kept TOMBSTONE_RETENTION_DAYS so feed followers learn of the deletion."""
    session = ForeignKeyField(Session, on_delete="CASCADE")
    jid = TextField()
    change_seq = BigIntegerField()
    deleted_at = DateTimeField(default=now_utc)


class Webhook(BaseModel):
    """An org's endpoint (contract §13): where its sessions' changes are POSTed. Times in epoch milliseconds."""
    org = ForeignKeyField(Org, on_delete="CASCADE")
    url = TextField()
    description = TextField(null=True)
    sessions = TextField(null=True)  # a JSON list of session ids; null: every session of the org
    changed_by = CharField(max_length=4, null=True)  # only changes of this kind; null: all
    enabled = BooleanField(default=True)
    disabled_reason = TextField(null=True)
    # "whsec_…", sealed with WEBHOOK_SECRETS_KEY when it is set (push/signing.py); the one before a rotation
    # keeps signing beside it until previous_secret_until.
    secret = TextField()
    previous_secret = TextField(null=True)
    previous_secret_until = BigIntegerField(null=True)
    created_at = BigIntegerField()


class WebhookStream(BaseModel):
    """One endpoint's delivery of one session's changes: delivered up to `position`; the batch in flight, fixed
    once attempted (`message_id`, `body`, up to `batch_end`); its retries; who holds it (a lease)."""
    webhook = ForeignKeyField(Webhook, on_delete="CASCADE", index=False)
    session = ForeignKeyField(Session, on_delete="CASCADE")
    position = BigIntegerField()
    message_id = CharField(max_length=40, null=True)
    body = TextField(null=True)
    batch_end = BigIntegerField(null=True)
    attempts = IntegerField(default=0)
    failing_since = BigIntegerField(null=True)
    next_attempt_at = BigIntegerField(default=0)
    lease_token = CharField(max_length=40, null=True)
    lease_until = BigIntegerField(null=True)
    # When the delivery process first saw a change here not yet delivered (the metric's oldest age).
    behind_since = BigIntegerField(null=True)

    class Meta:
        indexes = ((("webhook", "session"), True),)


class WebhookDelivery(BaseModel):
    """One attempt, kept WEBHOOK_LOG_RETENTION_DAYS."""
    webhook = ForeignKeyField(Webhook, on_delete="CASCADE", index=False)
    message_id = CharField(max_length=40)
    session_id = CharField(max_length=26)
    attempt = IntegerField()
    status = IntegerField(null=True)
    error = TextField(null=True)
    duration_ms = IntegerField()
    at = BigIntegerField()
    next_attempt_at = BigIntegerField(null=True)


class WebhookAttemptCount(BaseModel):
    """Attempts by outcome, across every delivery process (served by /metrics)."""
    outcome = CharField(primary_key=True, max_length=32)
    count = BigIntegerField(default=0)


class Setting(BaseModel):
    name = CharField(primary_key=True, max_length=64)
    value = TextField()


def sort_at_for(last_message_at):
    return NO_MESSAGE_SORT_AT if last_message_at is None else last_message_at


def load_cursor_secret():
    """The key init-db stored for cursors when SECRET_KEY is unset."""
    row = Setting.get_or_none(Setting.name == CURSOR_SECRET_SETTING)
    return None if row is None else row.value


# --- API keys ---------------------------------------------------------------

def touch_api_key(key_id, now, min_interval):
    """Record a use, unless one was recorded less than min_interval ago."""
    stale_before = now - min_interval
    with database.atomic():  # a transaction, so SQLite's write lock is waited for cooperatively
        (ApiKey.update(last_used_at=now)
         .where(ApiKey.id == key_id,
                ApiKey.last_used_at.is_null() | (ApiKey.last_used_at < stale_before))
         .execute())
