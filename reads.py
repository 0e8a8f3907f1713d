"""The hot reads, one database round trip each.

Every read an API request makes is one statement of two parts, joined by
UNION ALL: a head row saying who the caller is and whether the session is
theirs, and the body (one chat, a page of chats, a page of changes):

    SELECT 0 AS part, <the API key's row, the session if it is the caller's>  -- the head
    UNION ALL
    SELECT 1 AS part, <the body's rows> WHERE EXISTS (<the session is the caller's>)

An API key is looked up in that same statement, so a request with a key costs
what a request with a login JWT costs. The key's own conditions (not revoked,
holding the capability) are part of the SQL: a key that may not read never
reaches a session, even before auth.py turns the head into 401 or 403. The
SQL is text, one statement per read for both backends: peewee's query builder
cost more per request than the database's own work (measured with make bench).
"""
from dataclasses import dataclass

from models import Chat, database

# The chat columns a read returns, with their SQL types (PostgreSQL wants NULLs typed in a UNION).
CHAT_FIELDS = (("id", "BIGINT", '"chat"."id"'), ("session", "TEXT", '"chat"."session_id"'),
               ("jid", "TEXT", '"chat"."jid"'), ("type", "TEXT", '"chat"."type"'), ("name", "TEXT", '"chat"."name"'),
               ("last_message_at", "BIGINT", '"chat"."last_message_at"'), ("sort_at", "BIGINT", '"chat"."sort_at"'),
               ("unread_count", "INTEGER", '"chat"."unread_count"'), ("archived", "BOOLEAN", '"chat"."archived"'),
               ("pinned", "BOOLEAN", '"chat"."pinned"'), ("muted_until", "BIGINT", '"chat"."muted_until"'),
               ("change_seq", "BIGINT", '"chat"."change_seq"'))
CHAT_COLUMNS = ", ".join(f'{expression} AS "{name}"' for name, _, expression in CHAT_FIELDS)
KEY_FIELDS = (("key_id", "BIGINT", '"api_key"."id"'), ("key_org_id", "TEXT", '"api_key"."org_id"'),
              ("key_capabilities", "TEXT", '"api_key"."capabilities"'),
              ("key_revoked", "BOOLEAN", '"api_key"."revoked_at" IS NOT NULL'),
              ("key_last_used_at", "TIMESTAMP", '"api_key"."last_used_at"'))
SESSION_FIELDS = (("owned_session", "TEXT", '"session"."id"'), ("purged_seq", "BIGINT", '"session"."purged_seq"'))
# A key's capabilities are stored comma-separated ("read,send"): ",read,send," LIKE "%,read,%".
KEY_MAY = '\',\' || "api_key"."capabilities" || \',\' LIKE {p}'


@dataclass(frozen=True)
class Owner:
    """Whose sessions a read may see: an org (a verified login JWT), or whatever org a live API key
    holding `capability` belongs to (looked up in the same statement)."""
    org_id: str | None = None
    key_digest: str | None = None
    capability: str | None = None


@dataclass(frozen=True)
class Read:
    """What one hot read found: the head (the key's row, the session if the caller's) and the body rows."""
    head: dict | None  # None only for an API key that does not exist
    rows: list

    @property
    def session_owned(self):
        return self.head is not None and self.head["owned_session"] is not None


def read(owner, session_id, body_sql, body_params, body_fields, order_by=""):
    """One statement: the head for owner and session, then the body's rows if the session is the owner's."""
    sql, params = statement(owner, session_id, body_sql, body_params, body_fields, order_by)
    cursor = database.execute_sql(sql, params)
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, row)) for row in cursor.fetchall()]
    head = rows[0] if rows and rows[0]["part"] == 0 else None
    return Read(head, [row for row in rows if row["part"] == 1])


def statement(owner, session_id, body_sql, body_params, body_fields, order_by=""):
    """The SQL text, with the driver's placeholders, and the parameters of a read."""
    head_columns, head_from, head_params = _head(owner, session_id)
    condition, condition_params = _owns_session(owner, session_id)
    body_names = ", ".join(f'"body"."{name}"' for name, _, _ in body_fields)
    sql = ('SELECT 0 AS "part", ' + head_columns + ", " + _nulls(body_fields) + (" " + head_from if head_from else "")
           + " UNION ALL "
           "SELECT 1, " + _nulls(KEY_FIELDS + SESSION_FIELDS) + ", " + body_names + ' FROM (' + body_sql
           + ') AS "body" WHERE ' + condition + ' ORDER BY "part"' + (", " + order_by if order_by else ""))
    return sql.format(p=database.obj.param), head_params + body_params + condition_params


def _nulls(fields):
    return ", ".join(f'CAST(NULL AS {sql_type}) AS "{name}"' for name, sql_type, _ in fields)


def _columns(fields):
    return ", ".join(f'{expression} AS "{name}"' for name, _, expression in fields)


def _head(owner, session_id):
    """(its columns, its FROM clause, its parameters): the key's row (for an API key) and the session if owned."""
    if owner.key_digest is None:
        # One row whatever the session: each column a primary-key lookup of it, null when it isn't the org's.
        owned = '(SELECT "session"."{column}" FROM "session" WHERE "session"."id" = {{p}} AND "session"."org_id" = {{p}})'
        return (_nulls(KEY_FIELDS) + ", " + ", ".join(f'{owned.format(column=column)} AS "{name}"' for name, column in
                                                      (("owned_session", "id"), ("purged_seq", "purged_seq"))),
                "", [session_id, owner.org_id] * 2)
    return (_columns(KEY_FIELDS) + ", " + _columns(SESSION_FIELDS),
            'FROM "api_key" LEFT JOIN "session" ON "session"."id" = {p} AND "session"."org_id" = "api_key"."org_id" '
            'AND "api_key"."revoked_at" IS NULL AND ' + KEY_MAY + ' WHERE "api_key"."digest" = {p}',
            [session_id, f"%,{owner.capability},%", owner.key_digest])


def _owns_session(owner, session_id):
    """SQL true when the session is the owner's (a constant: evaluated once, before the body is read)."""
    if owner.key_digest is None:
        return ('EXISTS (SELECT 1 FROM "session" WHERE "session"."id" = {p} AND "session"."org_id" = {p})',
                [session_id, owner.org_id])
    return ('EXISTS (SELECT 1 FROM "session" JOIN "api_key" ON "api_key"."org_id" = "session"."org_id" '
            'WHERE "session"."id" = {p} AND "api_key"."digest" = {p} AND "api_key"."revoked_at" IS NULL '
            'AND ' + KEY_MAY + ')', [session_id, owner.key_digest, f"%,{owner.capability},%"])


# --- one chat -------------------------------------------------------------------

def find_chat(owner, session_id, jid):
    """The head, and the chat (a list of at most one row)."""
    return read(owner, session_id, 'SELECT ' + CHAT_COLUMNS + ' FROM "chat" '
                'WHERE "chat"."session_id" = {p} AND "chat"."jid" = {p}', [session_id, jid], CHAT_FIELDS)


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
    return read(owner, session_id, 'SELECT ' + CHAT_COLUMNS + ' FROM "chat" WHERE 1 = 0', [], CHAT_FIELDS).head
