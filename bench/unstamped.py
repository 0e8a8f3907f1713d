"""Chatstore with the change stamping switched off, for make bench's PATCH comparison (never served otherwise).

The same build as app:app, but a PATCH takes no position in the session's change order: no session lock is
taken, and the chat's change_seq and changed_by are left as they are. Everything else
(auth, schema, ETag, metrics, logs, the rest of the write) is the build's own, so the two differ by the
stamping alone.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from store import reads  # noqa: E402
from store import writes  # noqa: E402
from app import app  # noqa: E402,F401  (what gunicorn serves)
from models import Chat, database  # noqa: E402
from peewee import PostgresqlDatabase  # noqa: E402


def update_chat_unstamped(chat_id, session_id, changes, max_pinned, expected=None):
    """writes.update_chat without draw_positions and without writing change_seq or changed_by."""
    if expected is None and changes.get("pinned") is not True:
        return _update_without_reading(chat_id, changes)
    with database.atomic():
        chat = writes._lock(Chat.select().where(Chat.id == chat_id)).dicts().first()
        if chat is None:
            raise writes.ChatGone()
        if expected is not None:
            expected(chat)
        if changes.get("pinned") is True and not chat["pinned"]:
            writes._check_can_pin(chat, changes, max_pinned)
        Chat.update(changes).where(Chat.id == chat_id).execute()
    return {**chat, **changes}


def _update_without_reading(chat_id, changes):
    columns = sorted(changes)
    sql = ('UPDATE "chat" SET ' + ", ".join(f'"{column}" = {{p}}' for column in columns) + ' WHERE "id" = {p} '
           'RETURNING ' + reads.CHAT_COLUMNS).format(p=database.obj.param)
    params = [*(changes[column] for column in columns), chat_id]
    if isinstance(database.obj, PostgresqlDatabase):
        cursor = database.execute_sql(sql, params)
        row = cursor.fetchone()
    else:
        with database.atomic():  # the write lock taken as the stamped build takes it (CooperativeSqliteDatabase)
            cursor = database.execute_sql(sql, params)
            row = cursor.fetchone()
    if row is None:
        raise writes.ChatGone()
    return dict(zip([column[0] for column in cursor.description], row))


writes.update_chat = update_chat_unstamped
