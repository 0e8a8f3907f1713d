"""Waiting for a session's next change without holding a database connection: the long-poll's wake-up.

One watcher per process (a thread; a greenlet under gevent) looks, every POLL_SECONDS while anyone waits, at the
latest position of every session its waiters wait on — one statement for all of them, two index lookups a
session — and wakes each waiter whose session moved past the position it holds. A waiter holds an Event, not a
connection, so a thousand of them cost the pool nothing. Because it reads the change order itself, it sees a
commit of any worker or host, and works behind PgBouncer in transaction pooling, where LISTEN/NOTIFY (which needs
a session of its own) does not: the same mechanism on SQLite and PostgreSQL, at most POLL_SECONDS late.
"""
import logging
import os
import threading
import time

from models import database
from store.sql import execute

log = logging.getLogger("chatstore")
POLL_SECONDS = 0.25
SESSIONS_PER_STATEMENT = 500  # parameters of one statement, well under SQLite's limit


def latest_positions(session_ids):
    """{session id: the latest position of its change order} (0 for a session with no change yet)."""
    latest = {}
    session_ids = list(session_ids)
    for start in range(0, len(session_ids), SESSIONS_PER_STATEMENT):
        chunk = session_ids[start:start + SESSIONS_PER_STATEMENT]
        names = [f"s{index}" for index in range(len(chunk))]
        cursor = execute(
            'SELECT "session"."id", '
            '(SELECT MAX("chat"."change_seq") FROM "chat" WHERE "chat"."session_id" = "session"."id"), '
            '(SELECT MAX("chat_tombstone"."change_seq") FROM "chat_tombstone" '
            'WHERE "chat_tombstone"."session_id" = "session"."id") '
            'FROM "session" WHERE "session"."id" IN (' + ", ".join(f":{name}" for name in names) + ")",
            dict(zip(names, chunk)))
        for session_id, chats, tombstones in cursor.fetchall():
            latest[session_id] = max(chats or 0, tombstones or 0)
    return latest


class ChangeWatcher:
    """Waiters by session; a thread of its own that wakes them when their session moves on."""

    def __init__(self, poll_seconds=POLL_SECONDS):
        self.poll_seconds = poll_seconds
        self.lock = threading.Lock()
        self.waiting = {}  # session id -> list of (position, Event)
        self.process_id = None  # the process whose thread runs: a forked worker starts its own
        self.stopping = lambda: False  # the server's word that this process is shutting down (stop_when)

    def stop_when(self, stopping):
        """`stopping()` true: the server is shutting this process down, so every wait ends at once (an empty
        page is a true answer) instead of holding the shutdown for up to 30 s."""
        self.stopping = stopping

    def wait_past(self, session_id, position, timeout):
        """Block until the session's change order moves past `position`, or `timeout` seconds pass; whether it
        moved."""
        waiter = (position, threading.Event())
        if self.stopping():
            return False
        with self.lock:
            self.waiting.setdefault(session_id, []).append(waiter)
            self._ensure_running()
        try:
            return waiter[1].wait(timeout)
        finally:
            with self.lock:
                waiters = self.waiting.get(session_id, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self.waiting.pop(session_id, None)

    def _ensure_running(self):
        if self.process_id != os.getpid():
            self.process_id = os.getpid()
            threading.Thread(target=self._watch, name="change-watcher", daemon=True).start()

    def _watch(self):
        while True:
            time.sleep(self.poll_seconds)
            with self.lock:
                sessions = list(self.waiting)
            if not sessions:
                continue
            if self.stopping():
                self._wake_all()
                continue
            try:
                latest = self._latest(sessions)
            except Exception as error:  # the database away: waiters time out, and the next turn tries again
                log.warning("change watcher could not read the change order: %s", type(error).__name__)
                continue
            with self.lock:
                for session_id, waiters in self.waiting.items():
                    for position, event in waiters:
                        if latest.get(session_id, 0) > position:
                            event.set()

    def _wake_all(self):
        with self.lock:
            for waiters in self.waiting.values():
                for _, event in waiters:
                    event.set()

    def _latest(self, sessions):
        # connect and close rather than connection_context: see app.readyz.
        database.connect()
        try:
            return latest_positions(sessions)
        finally:
            database.close()


watcher = ChangeWatcher()
