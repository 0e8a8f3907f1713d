"""The hot reads as prepared statements on PostgreSQL: parsed and planned once per connection, not per request.

PostgreSQL parses, analyses and plans a statement's text every time it is
sent. For Chatstore's reads, with the caller's key and session checked in the
same statement (reads.py), that was half the database's time: GET one chat
cost 240 µs a round trip in a loop on one connection, 116 µs prepared, where the
floor's bare SELECT costs 121.

psycopg2 sends only text, so these are SQL-level statements: `PREPARE name AS
…` once, then `EXECUTE name(…)`. A statement's name is a digest of its text,
so one name always means one text, whatever Chatstore version prepared it on
a server connection that PgBouncer shares between clients.

Each connection remembers which texts it has prepared, and sends the first
use of a text as PREPARE and EXECUTE in one query: one round trip, always, on
a direct connection. Behind PgBouncer in transaction pooling a statement may
run on another server connection than the last one, so what a connection
remembers can be wrong either way, and the server's answer settles it: a name
it doesn't know (SQLSTATE 26000) is prepared and executed, a name it already
has (42P05) is executed, and one whose plan no longer fits the table (a
migration changed a column's type: 0A000) is prepared anew. PgBouncer keeps a
query of several statements on one server connection, so PREPARE and EXECUTE
always meet; should the retry land
on a server connection that answers the other way again, the statement goes
as text. So no read depends on what a server connection holds (nothing may
rely on session state behind PgBouncer: README); it only runs faster where
the statement is there.

Only reads outside a transaction take this path: a failed statement inside a
transaction would abort it.
"""
import functools
import hashlib
import re
import weakref

from peewee import DatabaseError

NAME_PREFIX = "chatstore_read_"
UNKNOWN_STATEMENT = "26000"    # invalid_sql_statement_name: not prepared on this server connection
ALREADY_PREPARED = "42P05"     # duplicate_prepared_statement: prepared there already
# feature_not_supported, which EXECUTE answers with "cached plan must not change result type" once a migration
# has changed the type of a column the statement returns: prepared again, it answers in the new type.
RESULT_TYPE_CHANGED = "0A000"
NAMED = re.compile(r"%\((\w+)\)s")


class PreparedReads:
    """A mixin for peewee's PostgreSQL database: execute_read(), a SELECT sent as a prepared statement."""

    def execute_read(self, sql, params):
        """A SELECT's rows (psycopg2's named placeholders, a dict of parameters), run as its text's prepared
        statement."""
        if self.in_transaction():
            return self.execute_sql(sql, params).fetchall()
        name, execute, prepare_and_execute = statement_texts(sql)
        known = _has_prepared(self.connection(), name)
        attempt = execute if known else prepare_and_execute
        for _ in range(2):
            try:
                cursor = self.execute_sql(attempt, params)
            except DatabaseError as error:
                attempt = _next_attempt(_sqlstate(error), name, execute, prepare_and_execute)
                if attempt is None:
                    raise
                continue
            if not (known and attempt is execute):  # a name this connection already knows needs no remembering
                _remember(self.connection(), name)  # the connection now: a reconnect may have replaced it
            return cursor.fetchall()
        # Behind PgBouncer the second attempt may land on yet another server connection, which answers the
        # other way again: the text itself, which every server runs.
        return self.execute_sql(sql, params).fetchall()


def _next_attempt(sqlstate, name, execute, prepare_and_execute):
    """What to send after the server answered an attempt with this SQLSTATE (None: the error is the caller's)."""
    if sqlstate == UNKNOWN_STATEMENT:
        return prepare_and_execute
    if sqlstate == ALREADY_PREPARED:
        return execute
    if sqlstate == RESULT_TYPE_CHANGED:
        return f"DEALLOCATE {name}; {prepare_and_execute}"
    return None


# What each open connection has prepared, forgotten with the connection.
_prepared_by_connection = weakref.WeakKeyDictionary()


def _has_prepared(connection, name):
    return name in _prepared_by_connection.get(connection, ())


def _remember(connection, name):
    known = _prepared_by_connection.get(connection)
    if known is None:
        _prepared_by_connection[connection] = {name}
    else:
        known.add(name)


@functools.lru_cache(maxsize=256)
def statement_texts(sql):
    """(name, EXECUTE …, PREPARE … ; EXECUTE …) for a SELECT with psycopg2's named placeholders (`%(name)s`,
    store.sql); both take its parameters as a dict. Each distinct name is one numbered parameter."""
    name = NAME_PREFIX + hashlib.sha256(sql.encode()).hexdigest()[:24]
    names = list(dict.fromkeys(NAMED.findall(sql)))
    numbered = NAMED.sub(lambda match: f"${names.index(match.group(1)) + 1}", sql)
    execute = f"EXECUTE {name}" + (f"({', '.join(f'%({parameter})s' for parameter in names)})" if names else "")
    return name, execute, f"PREPARE {name} AS {numbered}; {execute}"


def is_read(sql):
    """A SELECT, or one of these prepared reads (safe to run again on a new connection)."""
    start = sql.lstrip()[:len(NAME_PREFIX) + 8].upper()
    return start.startswith(("SELECT", "EXECUTE " + NAME_PREFIX.upper(), "PREPARE " + NAME_PREFIX.upper()))


def _sqlstate(error):
    return getattr(getattr(error, "orig", None), "pgcode", None)  # peewee keeps the driver's exception as orig
