"""Floor 1: a bare Flask app doing GET one chat's read with the raw driver, no auth, no ORM, no schema."""
import os
import sqlite3
from urllib.parse import urlsplit

from flask import Flask

COLUMNS = ("id", "jid", "session_id", "type", "name", "last_message_at", "unread_count", "archived", "pinned",
           "muted_until")
URL = os.environ["DATABASE_URL"]
app = Flask(__name__)
_connection = None


def connection():
    """One connection per worker process, opened on first use (after gunicorn forks)."""
    global _connection
    if _connection is None:
        parts = urlsplit(URL)
        if parts.scheme == "sqlite":
            _connection = sqlite3.connect(parts.path[1:], check_same_thread=False)
        else:
            import psycopg2
            _connection = psycopg2.connect(URL.replace("postgres://", "postgresql://", 1))
            _connection.autocommit = True
    return _connection


PLACEHOLDER = "?" if URL.startswith("sqlite") else "%s"
QUERY = (f"SELECT {', '.join(COLUMNS)} FROM chat WHERE session_id = {PLACEHOLDER} AND jid = {PLACEHOLDER}")


@app.get("/api/v1/sessions/<sid>/chats/<path:cid>")
def get_chat(sid, cid):
    cursor = connection().cursor()
    cursor.execute(QUERY, (sid, cid))
    row = cursor.fetchone()
    if row is None:
        return {"error": "not found"}, 404
    return dict(zip(COLUMNS, row))
