"""The changes feed's queries (contract §10): a page of the change order, and the tombstone purge.

A page is a keyset walk of two indexes, (session_id, change_seq) on chats and
on tombstones, from the client's position: its cost depends on the page size,
never on the session's size or how far back the position is. Why a position,
once read, is never followed by a smaller one committing: see writes.py.
"""
import datetime
import operator

from peewee import fn

from store import reads
from models import ChatTombstone, Session, database, now_utc
from store.reads import CHAT_COLUMNS, CHAT_FIELDS

CHANGE_FIELDS = CHAT_FIELDS + (("deleted", None), ("changed_by", None))  # the body's own columns
CHANGE_ORDER_KEY = operator.itemgetter("change_seq")

# A tombstone's row in a page has the chat's columns, all null but the jid (typed, for PostgreSQL's UNION).
TOMBSTONE_COLUMNS = ('CAST(NULL AS BIGINT) AS "id", "session_id" AS "session", "jid", CAST(NULL AS TEXT) AS "type", '
                     'CAST(NULL AS TEXT) AS "name", CAST(NULL AS BIGINT) AS "last_message_at", '
                     'CAST(NULL AS BIGINT) AS "sort_at", CAST(NULL AS INTEGER) AS "unread_count", '
                     'CAST(NULL AS BOOLEAN) AS "archived", CAST(NULL AS BOOLEAN) AS "pinned", '
                     'CAST(NULL AS BIGINT) AS "muted_until", "change_seq"')


# Each arm walks its (session_id, change_seq) index from the position and stops
# after `count` rows; the outer sort is over at most 2 × count rows.
CHANGES_SQL = (
    'SELECT * FROM (SELECT ' + CHAT_COLUMNS + ', 0 AS "deleted", "chat"."changed_by" FROM "chat" '
    'WHERE "chat"."session_id" = {p} AND "chat"."change_seq" > {p} ORDER BY "chat"."change_seq" LIMIT {p}) '
    'AS "live" UNION ALL '
    'SELECT * FROM (SELECT ' + TOMBSTONE_COLUMNS + ', 1 AS "deleted", \'sync\' AS "changed_by" '
    'FROM "chat_tombstone" WHERE "session_id" = {p} AND "change_seq" > {p} ORDER BY "change_seq" LIMIT {p}) '
    'AS "dead" ORDER BY "change_seq" LIMIT {p}')


def changes_after(owner, session_id, position, count):
    """The read's head, and up to `count` changes after `position` in change order: chats as stored now, and
    tombstones, each a chat's columns plus "deleted" and "changed_by". One round trip (reads.read)."""
    return reads.read(owner, session_id, CHANGES_SQL, changes_params(session_id, position, count), CHANGE_FIELDS,
                      CHANGE_ORDER_KEY)


def changes_params(session_id, position, count):
    return [session_id, position, count, session_id, position, count, count]


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
