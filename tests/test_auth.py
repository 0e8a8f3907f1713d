"""API keys, and the order of checks for both kinds of caller: 401, then 403, then 404 (contract §4)."""
import datetime

import pytest

import auth
import models
from conftest import (MISSING_SESSION_ID, OTHER_SESSION_ID, SESSION_ID, add_chats, chat_url, connected,
                      error_body, stored)

JID = "6281234567890@s.whatsapp.net"


@pytest.fixture
def chat(orgs):
    add_chats(SESSION_ID, {"jid": JID})
    add_chats(OTHER_SESSION_ID, {"jid": JID})


def test_key_format_is_prefix_base62_and_checksum():
    key = auth.new_api_key()
    assert key.startswith("csk_") and len(key) == 4 + 43 + 6
    assert key[4:].isalnum() and "." not in key
    assert auth.is_well_formed_api_key(key)
    assert auth.new_api_key() != key


def test_the_checksum_accepts_its_own_keys_and_refuses_any_other_checksum():
    """The check reads the sent checksum as a number; it must agree with the checksum new keys are written with."""
    for _ in range(200):
        key = auth.new_api_key()
        assert auth.is_well_formed_api_key(key)
        body, checksum = key[:-6], key[-6:]
        for position in range(6):
            for digit in "0Az":
                changed = checksum[:position] + digit + checksum[position + 1:]
                assert auth.is_well_formed_api_key(body + changed) is (changed == checksum)


@pytest.mark.parametrize("header, message", [
    (None, "missing Authorization header; send Authorization: Bearer <token>"),
    ("", "missing Authorization header; send Authorization: Bearer <token>"),
    ("Basic dXNlcjpwYXNz", "unsupported authorization scheme; send Authorization: Bearer <token>"),
    ("Bearer", "empty bearer token"),
    ("Bearer    ", "empty bearer token"),
])
def test_missing_or_foreign_credentials_are_401(client, chat, header, message):
    headers = {} if header is None else {"Authorization": header}
    response = client.get(chat_url(SESSION_ID, JID), headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json() == error_body("unauthorized", message)


@connected
def _key_id(name):
    return models.ApiKey.get(models.ApiKey.name == name).id


def _mistyped(key):
    last = key[-1]
    return key[:-1] + ("a" if last != "a" else "b")


@pytest.mark.parametrize("make_token, message", [
    (lambda keys: "garbage", "token is neither a login JWT nor a Chatstore API key"),
    (lambda keys: "csk_short", "API key is malformed (bad length, characters or checksum)"),
    (lambda keys: _mistyped(keys["read"]), "API key is malformed (bad length, characters or checksum)"),
    (lambda keys: auth.new_api_key(), "unknown API key"),
])
def test_bad_tokens_are_401_and_never_echoed(client, keys, chat, make_token, message):
    token = make_token(keys)
    response = client.get(chat_url(SESSION_ID, JID), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.get_json() == error_body("unauthorized", message)
    assert token not in response.get_data(as_text=True)


def test_bad_checksum_is_refused_without_a_query(client, keys, chat, monkeypatch):
    def no_lookup(digest, now_ms):
        raise AssertionError("a malformed key reached the database")
    monkeypatch.setattr(auth, "find_api_key", no_lookup)
    response = client.get(chat_url(SESSION_ID, JID), headers={"Authorization": f"Bearer {_mistyped(keys['read'])}"})
    assert response.status_code == 401


def test_keys_are_stored_only_as_sha256_digests(keys):
    with models.database.connection_context():
        rows = list(models.ApiKey.select().dicts())
    stored_text = repr(rows)
    for key in keys.values():
        assert key not in stored_text
        assert key[4:20] not in stored_text
    assert sorted(row["digest"] for row in rows) == sorted(auth.api_key_digest(key) for key in keys.values())


def test_revoked_key_is_401_at_once(client, keys, chat, runner):
    headers = {"Authorization": f"Bearer {keys['read']}"}
    assert client.get(chat_url(SESSION_ID, JID), headers=headers).status_code == 200
    key_id = _key_id("reader")
    assert runner.invoke(args=["revoke-api-key", str(key_id)]).exit_code == 0
    response = client.get(chat_url(SESSION_ID, JID), headers=headers)
    assert response.status_code == 401
    assert response.get_json() == error_body("unauthorized", "API key has been revoked")


def test_last_use_is_written_at_most_once_a_minute(client, keys, chat, monkeypatch):
    headers = {"Authorization": f"Bearer {keys['read']}"}
    start = datetime.datetime(2026, 1, 1, 12, 0, 0)
    clock = {"now": start}
    monkeypatch.setattr(models, "now_utc", lambda: clock["now"])
    monkeypatch.setattr(auth, "seconds_since_epoch", lambda: (clock["now"] - auth.UNIX_EPOCH).total_seconds())
    writes = []
    real_touch = models.touch_api_key
    monkeypatch.setattr(models, "touch_api_key", lambda *args: (writes.append(args), real_touch(*args)))

    @connected
    def last_used():
        return models.ApiKey.get(models.ApiKey.name == "reader").last_used_at

    assert last_used() is None
    client.get(chat_url(SESSION_ID, JID), headers=headers)
    assert last_used() == start
    clock["now"] = start + datetime.timedelta(seconds=59)
    client.get(chat_url(SESSION_ID, JID), headers=headers)
    client.get(chat_url(SESSION_ID), headers=headers)
    assert last_used() == start and len(writes) == 1
    clock["now"] = start + datetime.timedelta(seconds=61)
    client.get(chat_url(SESSION_ID, JID), headers=headers)
    assert last_used() == start + datetime.timedelta(seconds=61) and len(writes) == 2


@pytest.mark.parametrize("method, url, capability", [
    ("GET", chat_url(MISSING_SESSION_ID, JID), "read"),
    ("GET", chat_url(MISSING_SESSION_ID), "read"),
    ("PATCH", chat_url(MISSING_SESSION_ID, JID), "send"),
    ("GET", chat_url(OTHER_SESSION_ID, JID), "read"),
    ("PATCH", chat_url(OTHER_SESSION_ID, JID), "send"),
])
def test_capability_is_checked_before_any_lookup(client, tokens, chat, method, url, capability):
    lacking = tokens["send"] if capability == "read" else tokens["read"]
    response = client.open(url, method=method, json={"archived": True},
                           headers={"Authorization": f"Bearer {lacking}"})
    assert response.status_code == 403
    assert response.get_json() == error_body("forbidden", f"this token lacks the {capability!r} capability")


@pytest.mark.parametrize("method, path_of", [
    ("GET", lambda sid: chat_url(sid, JID)),
    ("GET", lambda sid: chat_url(sid)),
    ("PATCH", lambda sid: chat_url(sid, JID)),
])
def test_another_orgs_session_answers_exactly_like_a_missing_one(client, headers, chat, method, path_of):
    # The same request id on both, so every header but none can differ.
    headers = {**headers, "X-Request-ID": "same-for-both"}
    other = client.open(path_of(OTHER_SESSION_ID), method=method, json={"archived": True}, headers=headers)
    missing = client.open(path_of(MISSING_SESSION_ID), method=method, json={"archived": True}, headers=headers)
    assert other.status_code == missing.status_code == 404
    assert other.get_data() == missing.get_data()
    assert dict(other.headers) == dict(missing.headers)
    assert other.get_json() == error_body("not_found", "session not found")
    assert stored(JID, OTHER_SESSION_ID)["archived"] is False


def test_other_orgs_token_cannot_reach_our_session(client, tokens, chat):
    response = client.get(chat_url(SESSION_ID, JID), headers={"Authorization": f"Bearer {tokens['other']}"})
    assert response.status_code == 404
    assert response.get_json() == error_body("not_found", "session not found")


@pytest.mark.parametrize("query", ["limit=abc", "archived=yes", "cursor=garbage", "type=channel"])
@pytest.mark.parametrize("session_id", [OTHER_SESSION_ID, MISSING_SESSION_ID])
def test_not_found_comes_before_a_bad_query(client, headers, chat, query, session_id):
    response = client.get(f"{chat_url(session_id)}?{query}", headers=headers)
    assert response.status_code == 404
    assert response.get_json() == error_body("not_found", "session not found")


def test_not_found_comes_before_a_bad_body(client, headers, chat):
    for session_id, jid, message in [(OTHER_SESSION_ID, JID, "session not found"),
                                     (SESSION_ID, "0@s.whatsapp.net", "chat not found")]:
        response = client.patch(chat_url(session_id, jid), data="not json", headers=headers)
        assert response.status_code == 404
        assert response.get_json() == error_body("not_found", message)
