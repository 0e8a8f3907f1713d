"""The hot reads, one database round trip each.

Every read an API request makes is one statement: a head saying who the
caller is and whether the session is theirs, and the body (one chat, a page
of chats, a page of changes), which is read only if the session is theirs.
A page is the head's row followed by the body's rows, behind a gate:

    SELECT <head columns>, <nulls> FROM <the API key's row> LEFT JOIN <the session, if it is the caller's>
    UNION ALL
    SELECT <nulls>, <body columns>
    FROM (SELECT 1 WHERE EXISTS (<the session is the caller's>)) AS allowed CROSS JOIN (<the body>) AS body

(A page of chats on SQLite is read in a shape of its own, cheaper there: store/pages.py.)

One chat, or no body at all, is a single row: the chat table is joined to the
head's session row itself, which is only there when the session is the
caller's. (For one chat the union cost PostgreSQL half as much again to plan
as the join; for a page, a join repeated the head's columns on every row.)

An API key is looked up in that same statement, so a request with a key costs
what a request with a login JWT costs. The key's own conditions (not revoked,
not expired, holding the capability) are part of the SQL: a key that may not
read never reaches a session. The head the read found is handed to the
request's Owner, and auth settles the key from it (401, 403) in one place,
after the view. Parameters are named (store.sql), so each fragment below
carries its own: `:session_id`, and `:org_id` or `:key_digest`, `:now_ms`.
"""
import functools
import itertools
import re
from typing import NamedTuple

from config import CAPABILITIES
from models import Chat
from store.sql import columns, execute, execute_read, nulls, rows_as_dicts

# The chat's columns as the model declares them, each read under its field's name.
CHAT_FIELDS = tuple((field.name, f'"chat"."{field.column_name}"') for field in Chat._meta.sorted_fields)
CHAT_COLUMNS = columns(CHAT_FIELDS)
KEY_LIVE = '"api_key"."revoked_at" IS NULL AND ("api_key"."expires_at" IS NULL OR "api_key"."expires_at" > :now_ms)'
KEY_FIELDS = (("key_id", '"api_key"."id"'), ("key_org_id", '"api_key"."org_id"'),
              ("key_capabilities", '"api_key"."capabilities"'),
              ("key_revoked", '"api_key"."revoked_at" IS NOT NULL'),
              ("key_expired", '"api_key"."expires_at" IS NOT NULL AND "api_key"."expires_at" <= :now_ms'),
              ("key_last_used_at", '"api_key"."last_used_at"'))
SESSION_FIELDS = (("owned_session", '"session"."id"'), ("purged_seq", '"session"."purged_seq"'))
HEAD_NAMES = tuple(name for name, _ in KEY_FIELDS + SESSION_FIELDS)
KEY_BY_DIGEST = 'SELECT ' + columns(KEY_FIELDS) + ' FROM "api_key" WHERE "api_key"."digest" = :key_digest'


def _holding(capability):
    """Every stored capabilities text that holds `capability`: keys store theirs sorted and comma-joined
    (auth.capabilities_text), so "may read" is an equality test (SQLite's LIKE cost more than the rest of
    the read)."""
    sets = [sorted(chosen) for size in range(1, len(CAPABILITIES) + 1)
            for chosen in itertools.combinations(CAPABILITIES, size) if capability in chosen]
    return [",".join(chosen) for chosen in sets]


HOLDING = {capability: _holding(capability) for capability in CAPABILITIES}


def key_may(capability):
    """SQL: the key's capabilities hold `capability`. The texts are our own names, written into the statement
    (one per capability anyway). Equalities joined by OR, not `IN (…)`: SQLite compiles a list of more than two
    constants into a temporary b-tree it builds and drops on every run of the statement."""
    texts = HOLDING[capability]
    if not all(re.fullmatch("[a-z,]+", text) for text in texts):  # nothing to escape
        raise ValueError(f"a capability name that SQL would need escaped: {texts}")
    return "(" + " OR ".join(f'"api_key"."capabilities" = \'{text}\'' for text in texts) + ")"


class Owner:
    """Whose sessions a read may see: an org (a verified login JWT), or whatever org a live API key holding
    `capability` belongs to (looked up in the same statement). A read hands it the head it found (`found`),
    from which auth settles the key."""
    __slots__ = ("org_id", "key_digest", "capability", "now_ms", "key_read", "key_row")

    def __init__(self, org_id=None, key_digest=None, capability=None, now_ms=None):
        self.org_id, self.key_digest, self.capability, self.now_ms = org_id, key_digest, capability, now_ms
        self.key_read, self.key_row = False, None

    @property
    def by_key(self):
        return self.key_digest is not None

    def params(self, session_id):
        if self.by_key:
            return {"session_id": session_id, "key_digest": self.key_digest, "now_ms": self.now_ms}
        return {"session_id": session_id, "org_id": self.org_id}

    def found(self, head):
        """The head a read found: the key's row (or None, no such key) for auth to settle."""
        if self.by_key:
            self.key_read, self.key_row = True, head
        return head


class Read(NamedTuple):
    """What one hot read found: the head (the key's row, the session if the caller's) and the body rows."""
    head: dict | None  # None only for an API key that does not exist
    rows: list  # a page's rows as the driver hands them over (head_and_rows), or dicts by column name

    @property
    def session_owned(self):
        return self.head is not None and self.head["owned_session"] is not None


def find_api_key(digest, now_ms):
    """The head's key columns for the key with this digest, or None: the same columns a hot read finds."""
    rows = rows_as_dicts(execute(KEY_BY_DIGEST, {"key_digest": digest, "now_ms": now_ms}))
    return rows[0] if rows else None


def gated_statement(owner, session_id, body, body_params, body_fields):
    """The text and parameters of a gated read (gated_text)."""
    return (gated_text(owner.by_key, owner.capability, body, body_fields),
            {**owner.params(session_id), **body_params})


def read(owner, statement, body_fields, order_key, descending=False):
    """Run a gated statement: the head for owner and session, then the body's rows if the session is the
    owner's, each a dict by name.

    The body is a query of its own (a page, say), read only when a gate, evaluated once before it, finds the
    session is the owner's. Every body has a jid (a chat's or a tombstone's): the row without one is the head.
    The rows are put in `order_key` order once more here: SQL promises no order for a UNION ALL without an
    ORDER BY of its own, and that sort cost SQLite more than this one pass over rows already in order.
    """
    found = head_and_rows(owner, execute_read(*statement), body_fields)
    names = _names(body_fields)
    body_rows = [dict(zip(names, row[len(HEAD_NAMES):])) for row in found.rows]
    body_rows.sort(key=order_key, reverse=descending)
    return Read(found.head, body_rows)


def head_and_rows(owner, rows, body_fields, order_key=None, descending=False):
    """A Read of a statement's rows, the body's as the driver hands them over (the head's columns, null, then
    body_fields'), for a reader that takes their columns by position (row_columns names them); the head handed
    to the owner."""
    jid_at = len(HEAD_NAMES) + _names(body_fields).index("jid")
    heads = [row for row in rows if row[jid_at] is None]
    body = [row for row in rows if row[jid_at] is not None]
    if order_key is not None:
        body.sort(key=order_key, reverse=descending)
    return Read(owner.found(dict(zip(HEAD_NAMES, heads[0])) if heads else None), body)


def row_columns(body_fields):
    """The names of a statement's columns, by position: the head's, then the body's."""
    return HEAD_NAMES + _names(body_fields)


@functools.lru_cache(maxsize=16)
def _names(fields):
    return tuple(name for name, _ in fields)


def head_columns(by_key):
    return (columns(KEY_FIELDS) if by_key else nulls(KEY_FIELDS)) + ", " + columns(SESSION_FIELDS)


def head_source(by_key, capability):
    """The FROM of the head: one row for a JWT, one row for an API key that exists (none for one that doesn't),
    the session joined only if it is the caller's."""
    if not by_key:
        return ('FROM (SELECT 1 AS "caller") AS "caller" LEFT JOIN "session" '
                'ON "session"."id" = :session_id AND "session"."org_id" = :org_id')
    return ('FROM "api_key" LEFT JOIN "session" ON "session"."id" = :session_id '
            'AND "session"."org_id" = "api_key"."org_id" AND ' + KEY_LIVE + ' AND ' + key_may(capability))


def key_row(by_key):
    return ' WHERE "api_key"."digest" = :key_digest' if by_key else ""


def owned_session(by_key, capability):
    """SQL: the session's id if it is the owner's, else no row (as a scalar, null)."""
    if not by_key:
        return '(SELECT "session"."id" FROM "session" WHERE "session"."id" = :session_id AND "session"."org_id" = :org_id)'
    # The key's org as a scalar subquery rather than a join: PostgreSQL plans it faster.
    return ('(SELECT "session"."id" FROM "session" WHERE "session"."id" = :session_id AND "session"."org_id" = '
            '(SELECT "api_key"."org_id" FROM "api_key" WHERE "api_key"."digest" = :key_digest '
            'AND ' + KEY_LIVE + ' AND ' + key_may(capability) + '))')


@functools.lru_cache(maxsize=64)
def gated_text(by_key, capability, body, body_fields):
    """The head's row, then the body's rows behind the gate. The gate is a table of one row or none, crossed
    with the body: SQLite walks a CROSS JOIN left to right, so with no row it never reads the body, and
    PostgreSQL makes it a one-time filter over the whole join."""
    return ("SELECT " + head_columns(by_key) + ", " + nulls(body_fields) + " " + head_source(by_key, capability)
            + key_row(by_key) + " UNION ALL SELECT " + nulls(KEY_FIELDS + SESSION_FIELDS) + ", "
            + ", ".join(f'"body"."{name}"' for name, _ in body_fields)
            + ' FROM (SELECT 1 AS "allowed" WHERE EXISTS ' + owned_session(by_key, capability) + ') AS "allowed" '
            + 'CROSS JOIN (' + body + ') AS "body"')


@functools.lru_cache(maxsize=64)
def joined_text(by_key, capability, join):
    """One row at most: the head, and a table joined to its session row (that row is there only when the
    session is the caller's, a gate of its own), or with no join, the body's columns null."""
    body_columns = CHAT_COLUMNS if join else nulls(CHAT_FIELDS)
    return ("SELECT " + head_columns(by_key) + ", " + body_columns + " " + head_source(by_key, capability)
            + " " + join + key_row(by_key))


def _joined_read(owner, statement):
    rows = execute_read(*statement)
    if not rows:
        return Read(owner.found(None), [])
    chat = dict(zip(_names(CHAT_FIELDS), rows[0][len(HEAD_NAMES):]))
    return Read(owner.found(dict(zip(HEAD_NAMES, rows[0]))), [chat] if chat["jid"] is not None else [])


# The chat is found by the session id given, not by the session row's own id: PostgreSQL then plans the
# statement in three quarters of the time, with no column equality to carry across.
CHAT_JOIN = ('LEFT JOIN "chat" ON "session"."id" IS NOT NULL AND "chat"."session_id" = :session_id '
             'AND "chat"."jid" = :jid')


def find_chat_statement(owner, session_id, jid):
    return joined_text(owner.by_key, owner.capability, CHAT_JOIN), {**owner.params(session_id), "jid": jid}


def find_chat(owner, session_id, jid):
    """The head, and the chat (a list of at most one row), joined to the head's session row."""
    return _joined_read(owner, find_chat_statement(owner, session_id, jid))


def session_state_statement(owner, session_id):
    return joined_text(owner.by_key, owner.capability, ""), owner.params(session_id)


def session_state(owner, session_id):
    """The head alone: is the session the caller's, and (for API keys) the key's row."""
    return _joined_read(owner, session_state_statement(owner, session_id)).head
