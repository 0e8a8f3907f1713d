"""Positions in a session's change order (contract §10), drawn so that a follower of the feed never misses one.

The rule: a session's writers draw their positions one transaction after the
other, each holding the session's lock from its draw until it commits. A
position is then only ever drawn after every smaller one of that session has
committed (or rolled back, leaving a gap), so a reader that has seen position P
has seen everything of the session at or below P. A bare sequence would not do:
a number drawn early can commit after a larger one was already read.

- SQLite has one writer at a time (BEGIN IMMEDIATE), so the lock is there
  already, and the next position is one past the session's latest: the
  largest of its chats', its tombstones' (two index lookups) and the newest
  purged. Every position a write commits stays in one of those: a chat only
  moves up the order, a deleted chat's tombstone takes a later position, and a
  purge keeps the newest position it removed.
- PostgreSQL takes a transaction-level advisory lock on the session, then draws
  from the `change_position` sequence (migration 0003). The lock ends with the
  transaction, so it holds behind PgBouncer's transaction pooling too.
  Positions are increasing within a session and shared by all sessions, so
  there are gaps; only their order matters.

Either way no row is written to take a position: a PATCH updates the chat
alone, where a counter in the session row (this module's first form) made every
PATCH update two rows.

Locks are always taken in one order, the session's first, then chat rows, so
writers can't deadlock.
"""
from models import on_postgresql
from store.sql import execute

# The advisory lock's first key: Chatstore's namespace, so other users of advisory locks in the same database
# don't share ours. The second key is the session id's hash; two sessions whose hashes collide only queue
# behind each other, which costs time, never correctness.
LOCK_NAMESPACE = 0x43686174  # "Chat"
_LOCKED = f'(SELECT pg_advisory_xact_lock({LOCK_NAMESPACE}, hashtext(:session_id)) OFFSET 0) AS "locked"'
# Takes the session's lock until the transaction ends.
LOCK_SQL = "SELECT 1 FROM " + _LOCKED
# PostgreSQL: a new position for each row of a statement, in a write that holds the session's lock already
# (lock_session); the bulk import's upsert draws its batch's positions so.
POSITION_PER_ROW_HOLDING_LOCK = "nextval('change_position')"
# SQLite: the session's latest position.
LATEST_SQLITE = ('MAX((SELECT COALESCE(MAX("change_seq"), 0) FROM "chat" WHERE "session_id" = :session_id), '
                 '(SELECT COALESCE(MAX("change_seq"), 0) FROM "chat_tombstone" WHERE "session_id" = :session_id), '
                 '(SELECT "purged_seq" FROM "session" WHERE "id" = :session_id))')


def next_position_sql():
    """SQL for one new position of the session `:session_id`, inside a write's statement.

    On PostgreSQL, OFFSET 0 keeps the lock's subquery from being folded away: a value drawn FROM it is drawn
    after the lock.
    """
    if on_postgresql():
        return '(SELECT nextval(\'change_position\') FROM ' + _LOCKED + ')'
    return '(' + LATEST_SQLITE + ' + 1)'


def lock_session(session_id):
    """Hold the session's write lock for the rest of the transaction; the session's latest position.

    Must run inside the write's transaction (on SQLite, whose BEGIN IMMEDIATE already holds the database's
    write lock, this only reads the position). Any later write of the session draws a larger position.
    """
    if not on_postgresql():
        return _latest_on_sqlite(session_id)
    execute(LOCK_SQL, {"session_id": session_id})
    # is_called is false only before the first draw, when last_value has not been handed out yet.
    cursor = execute(
        'SELECT CASE WHEN "is_called" THEN "last_value" ELSE "last_value" - 1 END FROM "change_position"')
    return cursor.fetchone()[0]


def draw_positions(session_id, count):
    """`count` new positions of the session, increasing, under its write lock; inside the write's transaction."""
    if count == 0:
        return []
    if not on_postgresql():
        latest = _latest_on_sqlite(session_id)
        return list(range(latest + 1, latest + count + 1))
    cursor = execute('SELECT nextval(\'change_position\') FROM ' + _LOCKED
                     + ' CROSS JOIN generate_series(1, :count) ORDER BY 1', {"session_id": session_id, "count": count})
    return [row[0] for row in cursor.fetchall()]


def _latest_on_sqlite(session_id):
    # Inside a write transaction: SQLite's write lock is already held (BEGIN IMMEDIATE).
    return execute("SELECT " + LATEST_SQLITE, {"session_id": session_id}).fetchone()[0]
