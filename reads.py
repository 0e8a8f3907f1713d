"""The hot reads, one database round trip each.

Every read an API request makes is one statement: a head saying who the
caller is and whether the session is theirs, joined to the body (one chat, a
page of chats, a page of changes), which is read only if the session is theirs:

    SELECT <head columns>, <body columns>
    FROM <the API key's row> LEFT JOIN <the session, if it is the caller's>
    LEFT JOIN (SELECT * FROM (<the body>) WHERE EXISTS (<the session is the caller's>)) AS body ON TRUE

Each result row is the head, with a row of the body, or with nulls when the
body is empty. One chat needs no gate: the chat table is joined to the head's
session row itself, which is only there when the session is the caller's.
(A UNION ALL of the head and the body, this module's first form, cost
PostgreSQL half as much again to plan; GET of one chat went from ~0.7 ms to
~0.5 ms in-process.)

An API key is looked up in that same statement, so a request with a key costs
what a request with a login JWT costs. The key's own conditions (not revoked,
holding the capability) are part of the SQL: a key that may not read never
reaches a session, even before auth.py turns the head into 401 or 403. The
SQL is text, one statement per read for both backends: peewee's query builder
cost more per request than the database's own work (measured with make bench).
"""
import functools
import itertools
from typing import NamedTuple

from config import CAPABILITIES
from models import Chat, database

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
    """SQL: the key's capabilities hold `capability` (parameters: HOLDING[capability])."""
    return '"api_key"."capabilities" IN (' + ", ".join(["{p}"] * len(HOLDING[capability])) + ")"


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
    rows: list

    @property
    def session_owned(self):
        return self.head is not None and self.head["owned_session"] is not None


HEAD_NAMES = tuple(name for name, _ in KEY_FIELDS + SESSION_FIELDS)


def read(owner, session_id, body_sql, body_params, body_fields, order_by=""):
    """One statement: the head for owner and session, then the body's rows if the session is the owner's.

    The body is a query of its own (a page, say), read only when a gate, evaluated once before it, finds the
    session is the owner's. Every body has a jid (a chat's or a tombstone's): a row without one is the head alone.
    """
    return _run(owner, session_id, _gated_body_text, body_sql, body_params, body_fields, order_by)


def _run(owner, session_id, body_text, body, body_params, body_fields, order_by):
    sql, params = statement(owner, session_id, body, body_params, body_fields, order_by, body_text)
    rows = database.execute_sql(sql, params).fetchall()
    if not rows:
        return Read(None, [])
    # The head's columns come first, then the body's: each row is split by position, with names known
    # in advance (reading them off the cursor's description cost more than making the dicts).
    head = dict(zip(HEAD_NAMES, rows[0]))
    body_names, start = _names(body_fields), len(HEAD_NAMES)
    body = [dict(zip(body_names, row[start:])) for row in rows]
    return Read(head, [row for row in body if row["jid"] is not None])


@functools.lru_cache(maxsize=16)
def _names(fields):
    return tuple(name for name, _ in fields)


def statement(owner, session_id, body, body_params, body_fields, order_by="", body_text=None):
    """The SQL text, with the driver's placeholders, and the parameters of a read (a gated body by default)."""
    body_text = body_text or _gated_body_text
    by_key = owner.key_digest is not None
    sql = _statement_text(by_key, owner.capability, body_text, body, body_fields, order_by, database.obj.param)
    gated = body_text is _gated_body_text
    if by_key:
        may = HOLDING[owner.capability]
        gate = [session_id, owner.key_digest, *may] if gated else []
        return sql, [session_id, *may, *body_params, *gate, owner.key_digest]
    return sql, [session_id, owner.org_id, *body_params, *([session_id, owner.org_id] if gated else [])]


@functools.lru_cache(maxsize=64)
def _statement_text(by_key, capability, body_text, body, body_fields, order_by, placeholder):
    """Written once per shape: building it cost more than the database's own work on SQLite."""
    body_columns, body_from = body_text(by_key, capability, body, body_fields)
    sql = ("SELECT " + _head_columns(by_key) + ", " + body_columns + " " + _head_source(by_key, capability)
           + " " + body_from + (' WHERE "api_key"."digest" = {p}' if by_key else "")
           + (" ORDER BY " + order_by if order_by else ""))
    return sql.format(p=placeholder)


def _gated_body_text(by_key, capability, body_sql, body_fields):
    """A body query joined to the head, behind the gate (its parameters follow the body's)."""
    return (", ".join(f'"body"."{name}" AS "{name}"' for name, _ in body_fields),
            'LEFT JOIN (SELECT * FROM (' + body_sql + ') AS "unchecked" WHERE ' + _owns_session(by_key, capability)
            + ') AS "body" ON TRUE')


def _no_body_text(by_key, capability, _, body_fields):
    """No body at all: its columns null. (An always-empty body query was no cheaper: SQLite folded it into the
    join and scanned every chat to find none.)"""
    return ", ".join(f'NULL AS "{name}"' for name, _ in body_fields), ""


def _joined_body_text(by_key, capability, join, body_fields):
    """A table joined to the head's session row, which is there only when the session is the caller's: the
    join itself is the gate (PostgreSQL plans this in half the time of a gated body)."""
    return _columns(body_fields), join


def _columns(fields):
    return ", ".join(f'{expression} AS "{name}"' for name, expression in fields)


def _head_columns(by_key):
    if not by_key:
        return ", ".join(f'NULL AS "{name}"' for name, _ in KEY_FIELDS) + ", " + _columns(SESSION_FIELDS)
    return _columns(KEY_FIELDS) + ", " + _columns(SESSION_FIELDS)


def _head_source(by_key, capability):
    """The FROM of the head: one row for a JWT, one row for an API key that exists (none for one that doesn't),
    the session joined only if it is the caller's.

    Parameters: the session id and org id, or the session id and the capability's texts (the digest comes last,
    in the statement's WHERE).
    """
    if not by_key:
        return ('FROM (SELECT 1 AS "caller") AS "caller" LEFT JOIN "session" '
                'ON "session"."id" = {p} AND "session"."org_id" = {p}')
    return ('FROM "api_key" LEFT JOIN "session" ON "session"."id" = {p} AND "session"."org_id" = "api_key"."org_id" '
            'AND "api_key"."revoked_at" IS NULL AND ' + _key_may(capability))


def _owns_session(by_key, capability):
    """SQL true when the session is the owner's (a constant: evaluated once, before the body is read, so a caller
    who may not read it never reaches a chat).

    Parameters: the session id and org id, or the session id, the digest and the capability's texts.
    """
    if not by_key:
        return 'EXISTS (SELECT 1 FROM "session" WHERE "session"."id" = {p} AND "session"."org_id" = {p})'
    # The key's org as a scalar subquery rather than a join: PostgreSQL plans it faster.
    return ('EXISTS (SELECT 1 FROM "session" WHERE "session"."id" = {p} AND "session"."org_id" = '
            '(SELECT "api_key"."org_id" FROM "api_key" WHERE "api_key"."digest" = {p} '
            'AND "api_key"."revoked_at" IS NULL AND ' + _key_may(capability) + '))')


# --- one chat -------------------------------------------------------------------

def find_chat(owner, session_id, jid):
    """The head, and the chat (a list of at most one row), joined to the head's session row."""
    return _run(owner, session_id, _joined_body_text,
                'LEFT JOIN "chat" ON "chat"."session_id" = "session"."id" AND "chat"."jid" = {p}', [jid],
                CHAT_FIELDS, "")


# --- a page of chats ---------------------------------------------------------------

FILTER_COLUMNS = {"archived": '"chat"."archived"', "pinned": '"chat"."pinned"', "type": '"chat"."type"'}
DISPLAY_ORDER_SQL = '"pinned" DESC, "sort_at" DESC, "id" DESC'


def display_order():
    return [Chat.pinned.desc(), Chat.sort_at.desc(), Chat.id.desc()]


def display_position(chat):
    """The keyset position of a chat row: where the next page starts after it."""
    return [bool(chat["pinned"]), chat["sort_at"], chat["id"]]


def list_chats(owner, session_id, filters, after, limit):
    """The head, and up to `limit` chats in display order after the position `after` (or from the start).

    A deep page costs what the first page costs: the display index is walked
    from that position, never counted through.
    """
    return read(owner, session_id, *chat_page_sql(session_id, filters, after, limit), CHAT_FIELDS,
                order_by=DISPLAY_ORDER_SQL)


def chat_page_sql(session_id, filters, after, limit):
    """The page query and its parameters.

    The keyset comparison and ORDER BY follow the display index (session_id,
    pinned, sort_at, id), so both backends walk it backwards.
    """
    sql = ['SELECT ' + CHAT_COLUMNS + ' FROM "chat" WHERE "chat"."session_id" = {p}']
    params = [session_id]
    for name, value in filters.items():
        sql.append(f"AND {FILTER_COLUMNS[name]} = {{p}}")
        params.append(value)
    if after is not None:
        sql.append('AND ("chat"."pinned", "chat"."sort_at", "chat"."id") < ({p}, {p}, {p})')
        params.extend([bool(after[0]), after[1], after[2]])
    sql.append('ORDER BY "chat"."pinned" DESC, "chat"."sort_at" DESC, "chat"."id" DESC LIMIT {p}')
    params.append(limit)
    return " ".join(sql), params


def session_state(owner, session_id):
    """The head alone: is the session the caller's, and (for API keys) the key's row."""
    return _run(owner, session_id, _no_body_text, "", [], CHAT_FIELDS, "").head
