"""Conditional requests (contract §11): ETag and If-None-Match on reads, If-Match on PATCH."""
import datetime
import decimal
import hashlib
import json
import uuid

import pytest

from api import conditional
from conftest import OTHER_SESSION_ID, SESSION_ID, add_chats, chat_url, error_body, stored

JID = "1@s.whatsapp.net"
CHANGES_URL = f"/api/v1/sessions/{SESSION_ID}/changes"
STALE = error_body("precondition_failed", "the chat has changed since it was read (If-Match does not match its "
                   "ETag); read it again")


@pytest.fixture
def chat(orgs):
    add_chats(SESSION_ID, {"jid": JID, "name": "Alice"}, {"jid": "2@s.whatsapp.net"})


@pytest.mark.parametrize("url", [chat_url(SESSION_ID, JID), chat_url(SESSION_ID) + "?limit=1", CHANGES_URL])
def test_a_matching_if_none_match_is_304_with_no_body(client, headers, chat, url):
    first = client.get(url, headers=headers)
    etag = first.headers["ETag"]
    assert first.status_code == 200 and etag.startswith('"') and not etag.startswith("W/")
    again = client.get(url, headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    # RFC 9110 §15.4.5: a 304 has no content, so none of the headers describing it.
    assert "Content-Type" not in again.headers and "Content-Length" not in again.headers
    listed = client.get(url, headers={**headers, "If-None-Match": f'"other", {etag}'})
    assert listed.status_code == 304
    assert client.get(url, headers={**headers, "If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize("url", [chat_url(SESSION_ID, JID), chat_url(SESSION_ID), CHANGES_URL])
def test_the_etag_changes_when_the_body_does(client, headers, chat, url):
    before = client.get(url, headers=headers).headers["ETag"]
    client.patch(chat_url(SESSION_ID, JID), json={"archived": True}, headers=headers)
    after = client.get(url, headers={**headers, "If-None-Match": before})
    assert after.status_code == 200 and after.headers["ETag"] != before


def test_304_comes_only_after_authentication_and_lookup(client, headers, tokens, chat):
    etag = client.get(chat_url(SESSION_ID, JID), headers=headers).headers["ETag"]
    assert client.get(chat_url(SESSION_ID, JID), headers={"If-None-Match": etag}).status_code == 401
    forbidden = client.get(chat_url(SESSION_ID, JID), headers={"Authorization": f"Bearer {tokens['send']}",
                                                               "If-None-Match": etag})
    assert forbidden.status_code == 403
    for url in (chat_url(OTHER_SESSION_ID, JID), chat_url(SESSION_ID, "9@s.whatsapp.net")):
        assert client.get(url, headers={**headers, "If-None-Match": "*"}).status_code == 404


def test_patch_with_a_current_if_match_writes_and_answers_the_new_etag(client, headers, chat):
    etag = client.get(chat_url(SESSION_ID, JID), headers=headers).headers["ETag"]
    response = client.patch(chat_url(SESSION_ID, JID), json={"pinned": True}, headers={**headers, "If-Match": etag})
    assert response.status_code == 200 and response.get_json()["pinned"] is True
    assert response.headers["ETag"] == client.get(chat_url(SESSION_ID, JID), headers=headers).headers["ETag"]
    assert response.headers["ETag"] != etag


@pytest.mark.parametrize("if_match", ["stale", "weak"])
def test_patch_with_a_stale_or_weak_if_match_is_412_and_writes_nothing(client, headers, chat, if_match):
    etag = client.get(chat_url(SESSION_ID, JID), headers=headers).headers["ETag"]
    if if_match == "stale":
        client.patch(chat_url(SESSION_ID, JID), json={"mutedUntil": -1}, headers=headers)  # the other tab
        sent = etag
    else:
        sent = "W/" + etag  # If-Match compares strongly: a weak tag never matches
    response = client.patch(chat_url(SESSION_ID, JID), json={"archived": True}, headers={**headers, "If-Match": sent})
    assert response.status_code == 412 and response.get_json() == STALE
    assert stored(JID)["archived"] is False


def test_if_match_star_matches_any_stored_chat(client, headers, chat):
    response = client.patch(chat_url(SESSION_ID, JID), json={"archived": True}, headers={**headers, "If-Match": "*"})
    assert response.status_code == 200 and stored(JID)["archived"] is True


def test_if_match_is_checked_before_the_body(client, headers, chat):
    response = client.patch(chat_url(SESSION_ID, JID), json={"pinned": "yes"}, headers={**headers, "If-Match": '"x"'})
    assert response.status_code == 412


def test_a_stale_if_match_on_an_empty_patch_is_412(client, headers, chat):
    response = client.patch(chat_url(SESSION_ID, JID), json={}, headers={**headers, "If-Match": '"x"'})
    assert response.status_code == 412


def test_a_body_is_the_bytes_flasks_json_provider_would_send(app):
    """The ETag is the digest of these bytes, so they must be exactly what the app's JSON provider makes; the
    types orjson does not know go to Flask's own fallback, as with Flask's provider."""
    payload = {"name": "Zoë 🎉 \"q\" \\ \u2028", "n": [1, -2 ** 63, 2.5, None, True, False], "nested": {"a": {}},
               "when": datetime.datetime(2026, 1, 2, 3, 4, 5), "id": uuid.UUID(int=7), "d": decimal.Decimal("1.10")}
    with app.app_context():
        assert conditional.json_body(payload) == app.json.response(payload).get_data()
        assert json.loads(conditional.json_body(payload)) == {
            "name": payload["name"], "n": payload["n"], "nested": {"a": {}}, "when": "Fri, 02 Jan 2026 03:04:05 GMT",
            "id": "00000000-0000-0000-0000-000000000007", "d": "1.10"}


def test_a_served_body_and_its_etag_are_of_the_same_bytes(client, headers, orgs):
    add_chats(SESSION_ID, {"jid": JID, "name": "Zoë 🎉"})
    response = client.get(chat_url(SESSION_ID, JID), headers=headers)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert "Zoë 🎉".encode() in response.data and response.get_json()["name"] == "Zoë 🎉"
    assert response.headers["ETag"] == '"' + hashlib.blake2b(response.data, digest_size=16).hexdigest() + '"'
