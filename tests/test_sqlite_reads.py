"""SQLite's hot reads on the process's one read connection (models.SqliteReadConnection), and a request's pooled
connection checked out only by what needs it and always given back (both backends)."""
import os
import threading

import peewee
import pytest

import models
from auth import api_key_digest
from conftest import SESSION_ID, add_chats, chat_url, connected, error_body
from store import reads

sqlite_only = pytest.mark.skipif(os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
                                 reason="SQLite's read connection")
JID = "1@s.whatsapp.net"
CHANGES_URL = f"/api/v1/sessions/{SESSION_ID}/changes"


@pytest.fixture
def checkouts(monkeypatch):
    """How many times the pool hands this thread a connection."""
    counted = []
    pool_connect = models.database.obj.connect
    monkeypatch.setattr(models.database.obj, "connect", lambda *args, **kwargs: counted.append(1) or pool_connect(
        *args, **kwargs))
    return counted
@sqlite_only
def test_reads_check_nothing_out_of_the_pool(client, keys, orgs, checkouts):
    add_chats(SESSION_ID, {"jid": JID, "name": "Ada"})
    headers = {"Authorization": f"Bearer {keys['read']}"}
    urls = (chat_url(SESSION_ID, JID), chat_url(SESSION_ID), CHANGES_URL)
    checkouts.clear()
    for url in urls:
        assert client.get(url, headers=headers).status_code == 200
    assert len(checkouts) == 2  # the key's first use recorded (a write), the process's cursor key read once
    checkouts.clear()
    for url in urls:
        assert client.get(url, headers=headers).status_code == 200
    assert checkouts == []  # reads alone, on the read connection
    assert models.database.obj.is_closed()


@pytest.mark.parametrize("method, url, body, status, answer", [
    ("GET", chat_url(SESSION_ID, JID), None, 200, {"jid": JID, "pinned": False}),
    ("PATCH", chat_url(SESSION_ID, JID), {"pinned": True}, 200, {"jid": JID, "pinned": True}),
    ("GET", chat_url(SESSION_ID, "missing@s.whatsapp.net"), None, 404, error_body("not_found", "chat not found")),
    ("PATCH", chat_url(SESSION_ID, JID), {"x": 1}, 422,
     error_body("validation_error", "invalid x", {"x": ["Unknown field."]})),
    ("GET", CHANGES_URL + "?wait=1", None, 200, {"data": [], "hasMore": False}),
    ("GET", "/api/v1/api-keys", None, 403, error_body("forbidden", "this token lacks the 'admin' capability"))])
def test_every_request_gives_back_the_connection_it_took(client, keys, orgs, method, url, body, status, answer):
    """Whatever it answered: `answer` is the whole error body, or the fields a 200 carries."""
    add_chats(SESSION_ID, {"jid": JID})
    headers = {"Authorization": f"Bearer {keys['read,send']}"}  # no admin: the key list is refused, after a lookup
    if "wait" in url:  # a long-poll waits past the end of the order it reads first
        since = client.get(CHANGES_URL, headers=headers).get_json()["nextSince"]
        url = f"{url}&since={since}"
    response = client.open(url, method=method, headers=headers, json=body)
    assert response.status_code == status
    sent = response.get_json()
    assert (sent if "error" in answer else {name: sent[name] for name in answer}) == answer
    assert models.database.obj.is_closed()


@sqlite_only
@connected
def test_a_read_inside_a_write_sees_that_write_and_nobody_else_does(orgs):
    owner = reads.Owner(org_id="acme")
    with models.database.atomic() as transaction:
        models.Chat.insert(session=SESSION_ID, jid=JID, type="user", sort_at=0, change_seq=1).execute()
        assert [chat["jid"] for chat in reads.find_chat(owner, SESSION_ID, JID).rows] == [JID]
        outside = models.database.obj.reads.rows('SELECT COUNT(*) FROM "chat"', {})
        transaction.rollback()
    assert outside == [(0,)]  # the read connection sees commits only
    assert reads.find_chat(owner, SESSION_ID, JID).rows == []
@sqlite_only
def test_the_read_connection_cannot_write(orgs):
    with pytest.raises(peewee.OperationalError, match="readonly"):
        models.database.obj.reads.rows('DELETE FROM "session"', {})
    assert reads.session_state(reads.Owner(org_id="acme"), SESSION_ID)["owned_session"] == SESSION_ID
@sqlite_only
def test_a_key_read_with_the_chat_is_the_key_looked_up_alone(keys, orgs):
    add_chats(SESSION_ID, {"jid": JID})
    owner = reads.Owner(key_digest=api_key_digest(keys["read"]), capability="read", now_ms=0)
    found = reads.find_chat(owner, SESSION_ID, JID)
    with models.database.connection_context():
        looked_up = reads.find_api_key(owner.key_digest, 0)
    assert owner.key_row is found.head
    assert looked_up == {name: found.head[name] for name, _ in reads.KEY_FIELDS}
    assert looked_up["key_org_id"] == "acme" and not looked_up["key_revoked"] and not looked_up["key_expired"]
@sqlite_only
def test_threads_take_turns_on_the_read_connection(orgs):
    add_chats(SESSION_ID, *({"jid": f"{number}@s.whatsapp.net", "name": str(number)} for number in range(8)))
    owner, wrong = reads.Owner(org_id="acme"), []

    def read_own_chat(number):
        for _ in range(200):
            rows = reads.find_chat(owner, SESSION_ID, f"{number}@s.whatsapp.net").rows
            if [row["name"] for row in rows] != [str(number)]:
                wrong.append((number, rows))
    threads = [threading.Thread(target=read_own_chat, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
@sqlite_only
def test_a_forked_child_reads_on_a_connection_of_its_own(orgs):
    add_chats(SESSION_ID, {"jid": JID, "name": "Ada"})
    read = models.database.obj.reads
    parents = read.database
    assert reads.find_chat(reads.Owner(org_id="acme"), SESSION_ID, JID).rows[0]["name"] == "Ada"
    answer, told = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its read on a new connection, the inherited one kept unclosed
        try:
            rows = reads.find_chat(reads.Owner(org_id="acme"), SESSION_ID, JID).rows
            fresh = read.database is not parents and read.inherited == [parents] and not parents.is_closed()
            os.write(told, f"{rows[0]['name']} {fresh}".encode())
        finally:
            os._exit(0)
    os.close(told)
    with os.fdopen(answer) as reply:
        said = reply.read()
    os.waitpid(child, 0)
    assert said == "Ada True"
    assert read.database is parents and read.inherited == []
    assert reads.find_chat(reads.Owner(org_id="acme"), SESSION_ID, JID).rows[0]["name"] == "Ada"
@sqlite_only
def test_closing_the_database_closes_its_read_connection(orgs):
    assert reads.session_state(reads.Owner(org_id="acme"), SESSION_ID)["owned_session"] == SESSION_ID
    read = models.database.obj.reads
    assert not read.database.is_closed()
    models.database.obj.close_all()
    assert read.database.is_closed()
    assert reads.session_state(reads.Owner(org_id="acme"), SESSION_ID)["owned_session"] == SESSION_ID  # reopened
