"""A page of a session's chats in display order: its one statement on each backend, its keyset position.

The page rides on reads.py's head (who the caller is, whether the session is
theirs): on PostgreSQL as a body behind reads.py's gate, on SQLite merged
with the head under one ORDER BY (page_statement says why each).
"""
import functools
import operator

from models import Chat, on_postgresql
from schemas import MAX_PAGE_SIZE
from store.reads import (CHAT_COLUMNS, CHAT_FIELDS, KEY_FIELDS, SESSION_FIELDS, gated_text, head_and_rows, head_columns,
                         head_source, key_row, owned_session, row_columns)
from store.sql import execute_read, nulls

FILTERS = ("archived", "pinned", "type")  # each a column of the chat, compared with a parameter of its name
# A page's rows are the statement's as they come (reads.head_and_rows), their columns named by ROW_COLUMNS.
ROW_COLUMNS = row_columns(CHAT_FIELDS)
_POSITION_COLUMNS = ("pinned", "sort_at", "id")  # the display order, descending; none of them is ever null
DISPLAY_ORDER_KEY = operator.itemgetter(*map(ROW_COLUMNS.index, _POSITION_COLUMNS))


def display_order():
    return [Chat.pinned.desc(), Chat.sort_at.desc(), Chat.id.desc()]


def display_position(pinned, sort_at, chat_id):
    """The keyset position of a chat: where the next page starts after it."""
    return [bool(pinned), sort_at, chat_id]


def row_position(row):
    """The keyset position of a page's row (a row of list_chats)."""
    return display_position(*DISPLAY_ORDER_KEY(row))


# The most rows a page query may be asked for: the largest page, and the one row more that tells whether
# another page follows.
PAGE_ROWS_BOUND = MAX_PAGE_SIZE + 1


def list_chats(owner, session_id, filters, after, limit):
    """The head, and up to `limit` chats in display order after the position `after` (or from the start), each
    the statement's row as it comes (ROW_COLUMNS names its columns).

    A deep page costs what the first page costs: the display index is walked
    from that position, never counted through.
    """
    rows = execute_read(*page_statement(owner, session_id, filters, after, limit))
    if on_postgresql():
        return head_and_rows(owner, rows, CHAT_FIELDS, DISPLAY_ORDER_KEY, descending=True)
    return head_and_rows(owner, rows, CHAT_FIELDS)  # in display order already: the statement's own ORDER BY


def page_statement(owner, session_id, filters, after, limit):
    """A page's one statement and its parameters, for each backend the shape it reads fastest.

    PostgreSQL: the page query behind the gate (reads.gated_text), bounded for its prepared plan (chat_page_sql).
    SQLite: the head and the page under one ORDER BY and LIMIT, the page's session id the owned session's as
    a scalar (`_merged_page_text`).
    """
    conditions, params = _page_conditions(filters, after)
    params = {**owner.params(session_id), **params, "limit": limit}
    if on_postgresql():
        if limit > PAGE_ROWS_BOUND:
            raise ValueError(f"a page query reads at most {PAGE_ROWS_BOUND} rows")
        return gated_text(owner.by_key, owner.capability, _page_text(conditions, bounded=True), CHAT_FIELDS), params
    params["limit"] = limit + 1  # the head's row
    return _merged_page_text(owner.by_key, owner.capability, conditions), params


@functools.lru_cache(maxsize=64)
def _merged_page_text(by_key, capability, conditions):
    """SQLite's page: the head's row and the page's rows in one compound SELECT, ordered and limited as a whole.

    The page's rows are the session's only when the session is the owner's: `"session_id" = (<the owned
    session's id>)` compares with null otherwise, so the display index is walked from no key at all and no
    chat is read. The head's row sorts first (its "pinned" is 2, above any chat's 1), and SQLite merges the two
    SELECTs (a co-routine each), taking the page's rows off the index in order until the LIMIT. The page behind
    a gate made SQLite copy the page into a table first: 2,362 virtual machine steps for a first page of 50
    against 1,847 here (PostgreSQL sorted the whole session for this shape, so it keeps the gated one).
    """
    head_body = ", ".join(("2" if name == "pinned" else "NULL") + f' AS "{name}"' for name, _ in CHAT_FIELDS)
    if by_key:
        head = "SELECT " + head_columns(by_key) + ", " + head_body + " " + head_source(by_key, capability) + key_row(by_key)
    else:
        # With no FROM, SQLite knows the head is one row; joined to a constant row, it sorted that one row in a
        # temporary table of its own. (A page needs no purge position.)
        head = ("SELECT " + nulls(KEY_FIELDS) + ", " + owned_session(by_key, capability) + ' AS "owned_session", '
                'NULL AS "purged_seq", ' + head_body)
    return (head + " UNION ALL SELECT " + nulls(KEY_FIELDS + SESSION_FIELDS) + ", " + CHAT_COLUMNS
            + ' FROM "chat" WHERE "chat"."session_id" = ' + owned_session(by_key, capability) + conditions
            + ' ORDER BY "pinned" DESC, "sort_at" DESC, "id" DESC LIMIT :limit')


def chat_page_sql(session_id, filters, after, limit, bounded=False):
    """The page query alone and its parameters (the bench's floor runs it as it is)."""
    conditions, params = _page_conditions(filters, after)
    return _page_text(conditions, bounded), {"session_id": session_id, **params, "limit": limit}


@functools.lru_cache(maxsize=64)
def _page_text(conditions, bounded):
    """The page query. The keyset comparison and ORDER BY follow the display index (session_id, pinned,
    sort_at, id), so both backends walk it backwards.

    `bounded` (PostgreSQL, where the read is a prepared statement: store/prepared.py) limits the walk by a
    literal, PAGE_ROWS_BOUND, and the rows returned by the parameter, outside it. Under a bare `LIMIT $n` a
    prepared statement's generic plan must guess the limit (a tenth of the session's chats), so it never beat
    planning the page anew for each request (0.42 ms a round trip, against 0.22 bounded). The outer Limit takes
    rows from the inner one as it needs them, so the walk still stops after `limit` rows, and the outer ORDER BY
    costs no sort: the rows come in that order.
    """
    sql = ['SELECT ' + CHAT_COLUMNS + ' FROM "chat" WHERE "chat"."session_id" = :session_id' + conditions,
           'ORDER BY "chat"."pinned" DESC, "chat"."sort_at" DESC, "chat"."id" DESC']
    if bounded:
        sql = ["SELECT * FROM (", *sql, f'LIMIT {PAGE_ROWS_BOUND}) AS "page"',
               'ORDER BY "pinned" DESC, "sort_at" DESC, "id" DESC']
    sql.append("LIMIT :limit")
    return " ".join(sql)


def _page_conditions(filters, after):
    """The page's filters and keyset position, as SQL to follow the session's condition, and their parameters."""
    sql, params = [], {}
    for name in FILTERS:
        if name in filters:
            sql.append(f' AND "chat"."{name}" = :{name}')
            params[name] = filters[name]
    if after is not None:
        sql.append(' AND ("chat"."pinned", "chat"."sort_at", "chat"."id") < (:after_pinned, :after_sort_at, :after_id)')
        params.update(after_pinned=bool(after[0]), after_sort_at=after[1], after_id=after[2])
    return "".join(sql), params
