"""make bench, the sync endpoint and the changes feed: run from bench/run.py against the same served app.

- sync of 100,000 chats in batches of 1,000 over HTTP, one client as the gateway's worker is, against
  `import-chats` of the same 100,000 lines in the same run (chats per second each);
- a changes page (limit 100) from the start of a 1k session, from the start of the 1M session, and from
  900,000 changes deep into it, driven by wrk: p50 ratios to the 1k page;
- PATCH throughput with change stamping against the same build with it switched off (bench/unstamped.py),
  both served at once on the same database with the same settings and driven in turn, round after round; the
  medians' ratio is the cost of drawing a position and stamping it.
"""
import json
import time

import requests
from ulid import ULID

SYNC_CHATS, SYNC_BATCH = 100_000, 1_000


def fresh_session(env, org):
    """A new empty session; the bench database is kept between runs, so each run makes its own."""
    import models
    session_id = str(ULID())
    models.bind_database(env["DATABASE_URL"])
    with models.database.connection_context():
        models.Session.create(id=session_id, org=org)
    return session_id


def worker_key(env, org):
    import models
    from cli import issue_api_key
    models.bind_database(env["DATABASE_URL"])
    with models.database.connection_context():
        return issue_api_key(org, "read,send,sync", "bench worker")


def sync_rate(base, env, org, chat_lines):
    """Chats per second: 100,000 chats POSTed to …/sync in batches of 1,000, one after the other."""
    session_id, key = fresh_session(env, org), worker_key(env, org)
    lines = [json.loads(line) for line in chat_lines(SYNC_CHATS, 3)]
    url = f"{base}/api/v1/sessions/{session_id}/sync"
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {key}"
        started = time.monotonic()
        for start in range(0, SYNC_CHATS, SYNC_BATCH):
            response = http.post(url, json={"upsert": lines[start:start + SYNC_BATCH]}, timeout=60)
            response.raise_for_status()
        elapsed = time.monotonic() - started
    return SYNC_CHATS / elapsed


def import_rate(env, org, chat_lines, flask_command):
    """Chats per second: the same 100,000 lines through `flask import-chats` into a fresh session."""
    session_id = fresh_session(env, org)
    started = time.monotonic()
    flask_command(env, "import-chats", session_id, "-", stdin_lines=chat_lines(SYNC_CHATS, 3))
    return SYNC_CHATS / (time.monotonic() - started)


def deep_since(env, session_id, depth):
    """The since token a follower holds after reading `depth` changes of the session."""
    from api import cursors
    import models
    models.bind_database(env["DATABASE_URL"])
    with models.database.connection_context():
        position = (models.Chat.select(models.Chat.change_seq).where(models.Chat.session == session_id)
                    .order_by(models.Chat.change_seq).offset(depth - 1).limit(1).scalar())
    return cursors.encode_since(env["SECRET_KEY"].encode(), session_id, position)
