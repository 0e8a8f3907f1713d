"""The operator's side: request logs, readiness across a database outage, start-up checks under gunicorn."""
import json
import os
import shutil
import subprocess
import sys
import time

import peewee
import pytest

import models
from conftest import SESSION_ID, add_chats, chat_url, error_body

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUNICORN = os.path.join(os.path.dirname(sys.executable), "gunicorn")


def test_one_text_line_per_request(make_app, headers, orgs, capfd):
    make_app().test_client().get(chat_url(SESSION_ID), headers={**headers, "X-Request-ID": "req-42.a_b"})
    lines = [line for line in capfd.readouterr().err.splitlines() if "chatstore.request" in line]
    assert len(lines) == 1
    assert f"GET /api/v1/sessions/{SESSION_ID}/chats 200 " in lines[0]
    assert lines[0].endswith(" org=acme request_id=req-42.a_b")
    assert " auth=api_key " in lines[0] or " auth=jwt " in lines[0]


def test_json_log_lines_carry_the_request_fields(make_app, keys, orgs, capfd):
    client = make_app(LOG_FORMAT="json").test_client()
    capfd.readouterr()
    client.get(chat_url(SESSION_ID), headers={"Authorization": f"Bearer {keys['read']}"})
    client.get("/nope")
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert [(line["method"], line["path"], line["status"], line["auth"], line["org"]) for line in lines] == [
        ("GET", f"/api/v1/sessions/{SESSION_ID}/chats", 200, "api_key", "acme"),
        ("GET", "/nope", 404, None, None)]
    assert all(isinstance(line["ms"], float) and line["level"] == "INFO" for line in lines)


def test_log_format_must_be_text_or_json(make_app):
    from config import ConfigError
    with pytest.raises(ConfigError, match="LOG_FORMAT: must be text or json"):
        make_app(LOG_FORMAT="xml")


@pytest.mark.parametrize("variable, value, message", [
    ("ROLE_CAPABILITIES", "[1,2", "ROLE_CAPABILITIES: is not valid JSON"),
    ("ROLE_CAPABILITIES", '{"admin": ["write"]}', "ROLE_CAPABILITIES: must be a JSON object of role -> list of "
                                                 "capabilities among read, send, sync, admin"),
    ("JWKS_CACHE_SECONDS", "-5", "JWKS_CACHE_SECONDS: must not be negative, got -5"),
    ("DATABASE_URL", "oracle://db/x", "DATABASE_URL: unknown database scheme 'oracle'; "
                                      "use sqlite:///path, postgresql://… or postgres://…"),
    ("JWKS_URL", "file:///etc/passwd", "JWKS_URL: must be an http:// or https:// URL"),
])
def test_gunicorn_refuses_bad_configuration_with_one_line(variable, value, message):
    result = subprocess.run([GUNICORN, "app:app", "--bind", "127.0.0.1:0", "--workers", "2"], cwd=ROOT,
                            env={**os.environ, variable: value}, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    output = (result.stdout + result.stderr).splitlines()
    assert output == [f"chatstore: bad configuration: {message}"]


def _is_sqlite():
    return isinstance(models.database.obj, peewee.SqliteDatabase)


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
                    reason="stops and starts the PostgreSQL server; runs in the PostgreSQL pass")
def test_readyz_follows_postgresql_down_and_up_without_restart(client, headers, orgs):
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    cluster = ["pg_ctlcluster", "--skip-systemctl-redirect", os.listdir("/etc/postgresql")[0], "main"]
    assert client.get("/readyz").status_code == 200
    try:
        subprocess.run(cluster + ["stop", "-m", "fast"], check=True, timeout=60)
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.get_json() == error_body("unavailable", "the database is not answering")
        listing = client.get(chat_url(SESSION_ID), headers=headers)
        assert listing.status_code == 503
        assert listing.get_json()["error"]["code"] == "unavailable"
    finally:
        subprocess.run(cluster + ["start"], check=True, timeout=60)
        # This process's idle connections died with the server; its contexts (connection_context) can't
        # follow a connection replaced mid-read, as a served request does.
        models.database.close_idle()
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.get("/readyz").get_json() == {"status": "ok"}
    assert client.get(chat_url(SESSION_ID), headers=headers).status_code == 200


def test_readyz_follows_an_unreadable_sqlite_file_without_restart(make_app, tmp_path):
    path = tmp_path / "ready.db"
    client = make_app(DATABASE_URL=f"sqlite:///{path}").test_client()
    models.migrate()
    assert client.get("/readyz").get_json() == {"status": "ok"}
    # Root reads any file whatever its mode, so "unreadable" is made by putting a directory in its place.
    models.database.close_all()
    shutil.move(path, tmp_path / "aside.db")
    path.mkdir()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == error_body("unavailable", "the database is not answering")
    path.rmdir()
    shutil.move(tmp_path / "aside.db", path)
    assert client.get("/readyz").get_json() == {"status": "ok"}


@pytest.mark.skipif(os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
                    reason="SQLite's write lock; runs in the SQLite pass")
def test_requests_wait_out_a_long_sqlite_write(client, headers, orgs, database_url):
    """Another process holds the write lock for 1.5 s: reads answer at once, a PATCH waits and succeeds."""
    import sqlite3
    import threading
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    client.get(chat_url(SESSION_ID), headers=headers)  # records the key's last use: no write on the read below
    holder = sqlite3.connect(database_url[len("sqlite:///"):], isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE chat SET unread_count = 5")
    release = threading.Timer(1.5, lambda: holder.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    read = client.get(chat_url(SESSION_ID, "1@s.whatsapp.net"), headers=headers)
    assert read.status_code == 200 and time.monotonic() - started < 1.0
    write = client.patch(chat_url(SESSION_ID, "1@s.whatsapp.net"), json={"archived": True}, headers=headers)
    waited = time.monotonic() - started
    release.join()
    holder.close()
    assert write.status_code == 200, write.get_json()
    assert write.get_json()["archived"] is True and write.get_json()["unreadCount"] == 5
    assert 1.3 < waited < 5
