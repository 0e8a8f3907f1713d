"""The change order's lock (change_order.py): a session's writers take their positions one transaction after the
other, whichever way they write, and each write lands after the last; other sessions' writers don't wait for it
on PostgreSQL (SQLite has one writer at a time anyway)."""
import importlib.util
import os
import threading
import time

import pytest

from store import change_order
import models
from store import writes
from conftest import OTHER_SESSION_ID, SESSION_ID, add_chats, chat_url
from api.lines import load_line

HOLD_SECONDS = 0.3


class Holder:
    """An open write transaction of `session_id` that has written a chat, on a connection of its own."""

    def __init__(self, session_id):
        self.session_id = session_id

    def __enter__(self):
        self.context = models.database.connection_context()
        self.context.__enter__()
        self.transaction = models.database.atomic()
        self.transaction.__enter__()
        self.position = write_one(self.session_id, "held@s.whatsapp.net")
        return self

    def __exit__(self, *exc_info):
        self.committed_at = time.monotonic()
        self.transaction.__exit__(*exc_info)
        self.context.__exit__(*exc_info)


def in_thread(function):
    """Run function on a thread (its own connection); (thread, dict with its result and when it returned)."""
    outcome = {}

    def run():
        outcome["result"] = function()
        outcome["at"] = time.monotonic()
    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def write_one(session_id, jid):
    """Store one chat, in the caller's transaction; its position."""
    return writes.sync_chats(session_id, [load_line({"jid": jid, "name": "written"})], [], writes.NEW_CHAT_DEFAULTS)[2]


def draw_one(session_id, jid="drawn@s.whatsapp.net"):
    """A write of its own: one chat stored, on this thread's connection; its position."""
    with models.database.connection_context(), models.database.atomic():
        return write_one(session_id, jid)


def test_a_second_writer_of_the_session_draws_after_the_first_commits(orgs):
    with Holder(SESSION_ID) as holder:
        thread, outcome = in_thread(lambda: draw_one(SESSION_ID))
        time.sleep(HOLD_SECONDS)
        assert outcome == {}  # still waiting for the session's lock
    thread.join(10)
    assert outcome["at"] >= holder.committed_at
    assert outcome["result"] > holder.position


def test_a_patch_waits_for_the_sessions_writer_and_takes_a_later_position(client, headers, orgs):
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    with Holder(SESSION_ID) as holder:
        thread, outcome = in_thread(lambda: client.patch(chat_url(SESSION_ID, "1@s.whatsapp.net"), headers=headers,
                                                         json={"archived": True}))
        time.sleep(HOLD_SECONDS)
        assert outcome == {}
    thread.join(10)
    assert outcome["result"].status_code == 200
    assert outcome["at"] >= holder.committed_at
    with models.database.connection_context():
        stored = models.Chat.get(models.Chat.jid == "1@s.whatsapp.net")
    assert stored.archived is True and stored.change_seq > holder.position


def test_each_write_lands_after_the_last_and_a_batch_in_its_order(orgs):
    first = draw_one(SESSION_ID, "first@s.whatsapp.net")
    batch = [f"{n}@s.whatsapp.net" for n in range(5)]
    with models.database.connection_context(), models.database.atomic():
        last = writes.sync_chats(SESSION_ID, [load_line({"jid": jid}) for jid in batch], [], writes.NEW_CHAT_DEFAULTS)[2]
        assert change_order.lock_session(SESSION_ID) == last
    with models.database.connection_context():
        positions = [models.Chat.get(models.Chat.jid == jid).change_seq for jid in batch]
    assert positions == sorted(set(positions)) and positions[0] > first and positions[-1] == last
    assert draw_one(SESSION_ID) > last
    # A deleted chat's tombstone lands after the chat's own position, even when the chat was the latest.
    with models.database.connection_context(), models.database.atomic():
        deleted, after_delete = writes.sync_chats(SESSION_ID, [], [batch[-1], "drawn@s.whatsapp.net"],
                                                  writes.NEW_CHAT_DEFAULTS)[1:]
    assert deleted == 2 and after_delete > last
    with models.database.connection_context():
        tombstones = [stone.change_seq for stone in models.ChatTombstone.select()]
    assert len(tombstones) == 2 and min(tombstones) > last


def test_another_sessions_writer_does_not_wait(orgs, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time for the whole database")
    with Holder(SESSION_ID):
        thread, outcome = in_thread(lambda: draw_one(OTHER_SESSION_ID))
        thread.join(5)
        assert "result" in outcome  # drawn while SESSION_ID's writer still holds its lock


def test_the_sequence_starts_past_every_stored_position(orgs, database_url):
    """Migration 0003 on a database whose positions came from the per-session counters: the next position of
    every session is larger than any it stored before, so a `since` a client holds stays valid."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite needs no sequence: it reads its positions off the stored ones")
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    far = draw_one(SESSION_ID) + 1_000_000
    with models.database.connection_context():
        models.Chat.update(change_seq=far).where(models.Chat.session == SESSION_ID).execute()
        spec = importlib.util.spec_from_file_location(
            "migration_0003", os.path.join(models.MIGRATIONS_DIR, "0003_change_position_sequence.py"))
        migration = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(migration)
        migration.up(None, models.database.obj)
    assert draw_one(OTHER_SESSION_ID) == far + 1
