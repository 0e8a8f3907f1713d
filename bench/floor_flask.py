"""The floors: a bare Flask app doing Chatstore's reads with the raw driver; no auth, no ORM, no schema.

GET one chat is one SELECT by (session, jid); a list page is the same page query Chatstore runs (its text
from pages.chat_page_sql), the same 50 rows, as plain JSON. Connections come from a small per-process pool,
as Chatstore's do, so the floor works under gevent workers as well as sync ones.
"""
import os
import queue
import sqlite3
import sys
from contextlib import contextmanager
from urllib.parse import urlsplit

from flask import Flask

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from store.pages import chat_page_sql  # noqa: E402  (the page's SQL text only; nothing of the app runs here)
from store.sql import driver_text  # noqa: E402

COLUMNS = ("id", "jid", "session_id", "type", "name", "last_message_at", "unread_count", "archived", "pinned",
           "muted_until")
URL = os.environ["DATABASE_URL"]
PLACEHOLDER = "?" if URL.startswith("sqlite") else "%s"
ONE_QUERY = f"SELECT {', '.join(COLUMNS)} FROM chat WHERE session_id = {PLACEHOLDER} AND jid = {PLACEHOLDER}"
PAGE_SIZE = 50
app = Flask(__name__)
_idle = queue.LifoQueue()


def _connect():
    parts = urlsplit(URL)
    if parts.scheme == "sqlite":
        return sqlite3.connect(parts.path[1:], check_same_thread=False, isolation_level=None)
    import psycopg2
    connection = psycopg2.connect(URL.replace("postgres://", "postgresql://", 1))
    connection.autocommit = True
    return connection


@contextmanager
def connection():
    """A connection of this process's pool, opened on first use (after gunicorn forks)."""
    try:
        conn = _idle.get_nowait()
    except queue.Empty:
        conn = _connect()
    try:
        yield conn
    finally:
        _idle.put(conn)


@app.get("/api/v1/sessions/<sid>/chats/<path:cid>")
def get_chat(sid, cid):
    with connection() as conn:
        cursor = conn.cursor()
        cursor.execute(ONE_QUERY, (sid, cid))
        row = cursor.fetchone()
    if row is None:
        return {"error": "not found"}, 404
    return dict(zip(COLUMNS, row))


@app.get("/api/v1/sessions/<sid>/chats")
def list_chats(sid):
    sql, params = chat_page_sql(sid, {}, None, PAGE_SIZE + 1, bounded=PLACEHOLDER == "%s")
    with connection() as conn:
        cursor = conn.cursor()
        cursor.execute(driver_text(sql, postgresql=PLACEHOLDER == "%s"), params)
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    return {"data": [dict(zip(names, row)) for row in rows[:PAGE_SIZE]], "nextCursor": None}
