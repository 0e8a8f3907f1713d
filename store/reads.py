"""The hot reads, one database round trip each.

Every read an API request makes is one statement: a head saying who the
caller is and whether the session is theirs, and the body (one chat, a page
of chats, a page of changes), which is read only if the session is theirs.
A page is the head's row followed by the body's rows, behind a gate:

    SELECT <head columns>, <nulls> FROM <the API key's row> LEFT JOIN <the session, if it is the caller's>
    UNION ALL
    SELECT <nulls>, <body columns>
    FROM (SELECT 1 WHERE EXISTS (<the session is the caller's>)) AS allowed CROSS JOIN (<the body>) AS body

(A page of chats on SQLite is read in a shape of its own, cheaper there: pages.py.)

One chat, or no body at all, is a single row: the chat table is joined to the
head's session row itself, which is only there when the session is the
caller's. (For one chat the union cost PostgreSQL half as much again to plan
as the join: ~0.7 against ~0.5 ms in-process. For a page, a join repeated the
head's columns on every row, which both drivers paid for on each; the union
costs SQLite a quarter less, counted in instructions.)

An API key is looked up in that same statement, so a request with a key costs
what a request with a login JWT costs. The key's own conditions (not revoked,
holding the capability) are part of the SQL: a key that may not read never
reaches a session, even before auth.py turns the head into 401 or 403. The
SQL is text, one statement per read for both backends: peewee's query builder
cost more per request than the database's own work (measured with make bench).
"""
import functools
import itertools
import re
from typing import NamedTuple

from config import CAPABILITIES
from models import database

# The columns a read returns: (name, SQL expression).
CHAT_FIELDS = (("id", '"chat"."id"'), ("session", '"chat"."session_id"'), ("jid", '"chat"."jid"'),
               ("type", '"chat"."type"'), ("name", '"chat"."name"'), ("last_message_at", '"chat"."last_message_at"'),
               ("sort_at", '"chat"."sort_at"'), ("unread_count", '"chat"."unread_count"'),
               ("archived", '"chat"."archived"'), ("pinned", '"chat"."pinned"'),
               ("muted_until", '"chat"."muted_until"'), ("change_seq", '"chat"."change_seq"'))
CHAT_COLUMNS = ", ".join(f'{expression} AS "{name}"' for name, expression in CHAT_FIELDS)
KEY_FIELDS = (("key_id", '"api_key"."id"'), ("key_org_id", '"api_key"."org_id"'),
              ("key_capabilities", '"api_key"."capabilities"'),
              ("key_revoked", '"api_key"."revoked_at" IS NOT NULL'), ("key_last_used_at", '"api_key"."last_used_at"'))
SESSION_FIELDS = (("owned_session", '"session"."id"'), ("purged_seq", '"session"."purged_seq"'))


def _holding(capability):
    """Every stored capabilities text that holds `capability`: keys store theirs sorted and comma-joined
    (cli.py), so "may read" is an equality test (SQLite's LIKE cost more than the rest of the read)."""
    sets = [sorted(chosen) for size in range(1, len(CAPABILITIES) + 1)
            for chosen in itertools.combinations(CAPABILITIES, size) if capability in chosen]
    return [",".join(chosen) for chosen in sets]


HOLDING = {capability: _holding(capability) for capability in CAPABILITIES}


def _key_may(capability):
    """SQL: the key's capabilities hold `capability`. The texts are written into the statement, which is one per
    capability anyway: each parameter fewer is one less for the driver to quote on every request.

    Equalities joined by OR, not `IN (…)`: SQLite compiles a list of more than two constants into a temporary
    b-tree it builds and drops on every run of the statement (OpenEphemeral), 35k instructions of a GET of one
    chat served; the ORs are four comparisons (EXPLAIN shows them), and PostgreSQL reads either the same way."""
    texts = HOLDING[capability]
    if not all(re.fullmatch("[a-z,]+", text) for text in texts):  # our own names, with nothing to escape
        raise ValueError(f"a capability name that SQL would need escaped: {texts}")
    return "(" + " OR ".join(f'"api_key"."capabilities" = \'{text}\'' for text in texts) + ")"


class Owner(NamedTuple):
    """Whose sessions a read may see: an org (a verified login JWT), or whatever org a live API key
    holding `capability` belongs to (looked up in the same statement). Owner and Read are tuples: one of
    each is made on every request, and a tuple is the cheapest to make."""
    org_id: str | None = None
    key_digest: str | None = None
    capability: str | None = None


class Read(NamedTuple):
    """What one hot read found: the head (the key's row, the session if the caller's) and the body rows."""
    head: dict | None  # None only for an API key that does not exist
    rows: list  # dicts by column name; a page's chats, the statement's rows as they come (head_and_rows)

    @property
    def session_owned(self):
        return self.head is not None and self.head["owned_session"] is not None


HEAD_NAMES = tuple(name for name, _ in KEY_FIELDS + SESSION_FIELDS)


def read(owner, session_id, body_sql, body_params, body_fields, order_key, descending=False):
    """One statement: the head for owner and session, then the body's rows if the session is the owner's.

    The body is a query of its own (a page, say), read only when a gate, evaluated once before it, finds the
    session is the owner's. Every body has a jid (a chat's or a tombstone's): the row without one is the head.
    The rows come back in the body's order, sorted by `order_key` (descending, or not) once more here: SQL
    promises no order for a UNION ALL without an ORDER BY of its own, and that sort cost SQLite more than
    this one pass over rows already in order.
    """
    sql, params = statement(owner, session_id, body_sql, body_params, body_fields, gated=True)
    return head_and_body(database.obj.execute_read(sql, params).fetchall(), body_fields, order_key, descending)


def head_and_body(rows, body_fields, order_key=None, descending=False):
    """A Read of a statement's rows: the head's row (the one with no jid) and the body's, each a dict by name,
    put in order by `order_key` unless they come in order already."""
    found = head_and_rows(rows, body_fields)
    start, names = len(HEAD_NAMES), _names(body_fields)  # once per read, not per row: a page has up to 201
    body = [dict(zip(names, row[start:])) for row in found.rows]
    if order_key is not None:
        body.sort(key=order_key, reverse=descending)
    return Read(found.head, body)


def head_and_rows(rows, body_fields, order_key=None, descending=False):
    """A Read of a statement's rows with the body's rows as the driver hands them over (the head's columns,
    null, then body_fields'), for a reader that takes their columns by position (row_columns names them), put
    in order by `order_key` unless they come in order already."""
    jid_at = len(HEAD_NAMES) + _names(body_fields).index("jid")
    heads = [row for row in rows if row[jid_at] is None]
    body = [row for row in rows if row[jid_at] is not None]
    if order_key is not None:
        body.sort(key=order_key, reverse=descending)
    return Read(dict(zip(HEAD_NAMES, heads[0])) if heads else None, body)


def row_columns(body_fields):
    """The names of a statement's columns, by position: the head's, then the body's."""
    return HEAD_NAMES + _names(body_fields)


def _joined_read(owner, session_id, join, join_params, body_fields):
    """One statement, one row at most: the head, and a table joined to its session row (or no table)."""
    sql, params = statement(owner, session_id, join, join_params, body_fields, gated=False)
    rows = database.obj.execute_read(sql, params).fetchall()  # .obj: observability/hooks.py
    if not rows:
        return Read(None, [])
    joined = _body(body_fields, rows[0])
    return Read(dict(zip(HEAD_NAMES, rows[0])), [joined] if joined["jid"] is not None else [])


def _body(body_fields, row):
    """The body's part of a row (its columns follow the head's), by names known in advance: reading them off
    the cursor's description cost more than making the dicts."""
    return dict(zip(_names(body_fields), row[len(HEAD_NAMES):]))


@functools.lru_cache(maxsize=16)
def _names(fields):
    return tuple(name for name, _ in fields)


def statement(owner, session_id, body, body_params, body_fields, gated):
    """The SQL text, with the driver's placeholders, and the parameters of a read: a gated body (`read`), or a
    table joined to the head's session row, or no body at all when `body` is empty (`_joined_read`)."""
    by_key = owner.key_digest is not None
    sql = _statement_text(by_key, owner.capability, gated, body, body_fields, database.obj.param)
    if by_key:
        if gated:
            return sql, [session_id, owner.key_digest, session_id, owner.key_digest, *body_params]
        return sql, [session_id, *body_params, owner.key_digest]
    return sql, [session_id, owner.org_id, *([session_id, owner.org_id] if gated else []), *body_params]


@functools.lru_cache(maxsize=64)
def _statement_text(by_key, capability, gated, body, body_fields, placeholder):
    """Written once per shape: building it cost more than the database's own work on SQLite."""
    head = "SELECT " + head_columns(by_key) + ", "
    key_row = ' WHERE "api_key"."digest" = {p}' if by_key else ""
    if not gated:
        # A join to the head's session row is its own gate: that row is there only when the session is the
        # caller's (PostgreSQL plans this in half the time of a gated body). No join: the body's columns null.
        # (An always-empty body query was no cheaper: SQLite folded it into the join and scanned every chat.)
        body_columns = _columns(body_fields) if body else nulls(body_fields)
        sql = head + body_columns + " " + head_source(by_key, capability) + " " + body + key_row
    else:
        # The head's row, then the body's rows behind the gate. A join of the two repeated the head's columns on
        # every body row, which cost both drivers more to hand back than the nulls do (and SQLite a copy of the
        # page before the join). The gate is a table of one row or none, crossed with the body: SQLite walks a
        # CROSS JOIN left to right, so with no row it never reads the body (as a WHERE on the body, SQLite read
        # the page first and dropped it), and PostgreSQL makes it a one-time filter over the whole join.
        sql = (head + nulls(body_fields) + " " + head_source(by_key, capability) + key_row
               + " UNION ALL SELECT " + nulls(KEY_FIELDS + SESSION_FIELDS) + ", "
               + ", ".join(f'"body"."{name}"' for name, _ in body_fields)
               + ' FROM (SELECT 1 AS "allowed" WHERE ' + _owns_session(by_key, capability) + ') AS "allowed" '
               + 'CROSS JOIN (' + body + ') AS "body"')
    return sql.format(p=placeholder)


def nulls(fields):
    return ", ".join(f'NULL AS "{name}"' for name, _ in fields)


def _columns(fields):
    return ", ".join(f'{expression} AS "{name}"' for name, expression in fields)


def head_columns(by_key):
    if not by_key:
        return nulls(KEY_FIELDS) + ", " + _columns(SESSION_FIELDS)
    return _columns(KEY_FIELDS) + ", " + _columns(SESSION_FIELDS)


def head_source(by_key, capability):
    """The FROM of the head: one row for a JWT, one row for an API key that exists (none for one that doesn't),
    the session joined only if it is the caller's.

    Parameters: the session id and org id, or the session id (the digest comes last, in the statement's WHERE).
    """
    if not by_key:
        return ('FROM (SELECT 1 AS "caller") AS "caller" LEFT JOIN "session" '
                'ON "session"."id" = {p} AND "session"."org_id" = {p}')
    return ('FROM "api_key" LEFT JOIN "session" ON "session"."id" = {p} AND "session"."org_id" = "api_key"."org_id" '
            'AND "api_key"."revoked_at" IS NULL AND ' + _key_may(capability))


def _owns_session(by_key, capability):
    """SQL true when the session is the owner's (a constant: evaluated once, before the body is read, so a caller
    who may not read it never reaches a chat).

    Parameters: the session id and org id, or the session id and the digest.
    """
    return "EXISTS " + owned_session(by_key, capability)


def owned_session(by_key, capability):
    """SQL: the session's id if it is the owner's, else no row (as a scalar, null).

    Parameters: the session id and org id, or the session id and the digest.
    """
    if not by_key:
        return '(SELECT "session"."id" FROM "session" WHERE "session"."id" = {p} AND "session"."org_id" = {p})'
    # The key's org as a scalar subquery rather than a join: PostgreSQL plans it faster.
    return ('(SELECT "session"."id" FROM "session" WHERE "session"."id" = {p} AND "session"."org_id" = '
            '(SELECT "api_key"."org_id" FROM "api_key" WHERE "api_key"."digest" = {p} '
            'AND "api_key"."revoked_at" IS NULL AND ' + _key_may(capability) + '))')


# --- one chat -------------------------------------------------------------------

# The chat is found by the session id given, not by the session row's own id: PostgreSQL then plans the
# statement in three quarters of the time (0.14 against 0.19 ms), with no column equality to carry across.
CHAT_JOIN = ('LEFT JOIN "chat" ON "session"."id" IS NOT NULL AND "chat"."session_id" = {p} '
             'AND "chat"."jid" = {p}')


def find_chat(owner, session_id, jid):
    """The head, and the chat (a list of at most one row), joined to the head's session row."""
    return _joined_read(owner, session_id, CHAT_JOIN, [session_id, jid], CHAT_FIELDS)


def session_state(owner, session_id):
    """The head alone: is the session the caller's, and (for API keys) the key's row."""
    return _joined_read(owner, session_id, "", [], CHAT_FIELDS).head
