"""The changes feed's queries (contract §10): a page of the change order, and the tombstone purge.

A page is a keyset walk of two indexes, (session_id, change_seq) on chats and
on tombstones, from the client's position: its cost depends on the page size,
never on the session's size or how far back the position is. Why a position,
once read, is never followed by a smaller one committing: see writes.py.
"""
import datetime
import operator

from peewee import fn

from models import Chat, ChatTombstone, Session, database, now_utc
from store import reads
from store.reads import CHAT_COLUMNS, CHAT_FIELDS
from store.sql import execute, rows_as_dicts

START = 0  # the position before every change
CHANGE_FIELDS = CHAT_FIELDS + (("deleted", None),)  # the body's own columns
CHANGE_ORDER_KEY = operator.itemgetter("change_seq")
# SQL's types of peewee's field types, for a tombstone's typed nulls (PostgreSQL's UNION wants them typed).
SQL_TYPES = {"BIGAUTO": "BIGINT", "BIGINT": "BIGINT", "INT": "INTEGER", "BOOL": "BOOLEAN", "TEXT": "TEXT",
             "VARCHAR": "TEXT"}
# Kept from the tombstone: these of a chat's columns; the others are null.
TOMBSTONE_KEEPS = {"session": '"session_id"', "jid": '"jid"', "change_seq": '"change_seq"',
                   "changed_by": "'sync'"}


def _tombstone_column(field):
    if field.name in TOMBSTONE_KEEPS:
        return f'{TOMBSTONE_KEEPS[field.name]} AS "{field.name}"'
    return f'CAST(NULL AS {SQL_TYPES[field.field_type]}) AS "{field.name}"'


# A tombstone's row in a page has the chat's columns, all null but those it keeps.
TOMBSTONE_COLUMNS = ", ".join(_tombstone_column(field) for field in Chat._meta.sorted_fields)


# Each arm walks its (session_id, change_seq) index from the position and stops
# after `count` rows; the outer sort is over at most 2 × count rows.
CHANGES_SQL = (
    'SELECT * FROM (SELECT ' + CHAT_COLUMNS + ', 0 AS "deleted" FROM "chat" '
    'WHERE "chat"."session_id" = :session_id AND "chat"."change_seq" > :since '
    'ORDER BY "chat"."change_seq" LIMIT :count) AS "live" UNION ALL '
    'SELECT * FROM (SELECT ' + TOMBSTONE_COLUMNS + ', 1 AS "deleted" '
    'FROM "chat_tombstone" WHERE "session_id" = :session_id AND "change_seq" > :since '
    'ORDER BY "change_seq" LIMIT :count) AS "dead" ORDER BY "change_seq" LIMIT :count')


def changes_statement(owner, session_id, position, count):
    return reads.gated_statement(owner, session_id, CHANGES_SQL, {"since": position, "count": count}, CHANGE_FIELDS)


def session_changes_after(session_id, position, count):
    """Up to `count` changes of the session after `position`, in change order, for the delivery process (which
    reads for every org, no caller to check): the same rows as changes_after's body."""
    return rows_as_dicts(execute(CHANGES_SQL, {"session_id": session_id, "since": position, "count": count}))


def changes_after(owner, session_id, position, count):
    """The read's head, and up to `count` changes after `position` in change order: chats as stored now, and
    tombstones, each a chat's columns plus "deleted". One round trip (reads.read)."""
    return reads.read(owner, changes_statement(owner, session_id, position, count), CHANGE_FIELDS, CHANGE_ORDER_KEY)


def page_of_changes(rows, window, limit, changed_by, position):
    """(up to `limit` rows of the kind asked for, the position after the last row read, whether more wait).

    `rows` holds one row more than the window, so whether more wait is known without another read.
    """
    picked, read = [], 0
    for row in rows[:window]:
        if len(picked) == limit:
            break
        read += 1
        position = row["change_seq"]
        if changed_by is None or row["changed_by"] == changed_by:
            picked.append(row)
    return picked, position, len(rows) > read


def purge_tombstones(retention_days):
    """Remove tombstones older than the retention; the count removed.

    Each session first remembers the newest position it purged, so a client
    whose `since` is older learns (410) that it may have missed a deletion.
    """
    cutoff = now_utc() - datetime.timedelta(days=retention_days)
    old = ChatTombstone.deleted_at < cutoff
    with database.atomic():
        newest = (ChatTombstone.select(ChatTombstone.session, fn.MAX(ChatTombstone.change_seq).alias("seq"))
                  .where(old).group_by(ChatTombstone.session).tuples())
        for session_id, seq in list(newest):
            Session.update(purged_seq=seq).where(Session.id == session_id, Session.purged_seq < seq).execute()
        return ChatTombstone.delete().where(old).execute()
