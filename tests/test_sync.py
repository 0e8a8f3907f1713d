"""POST /api/v1/sessions/{sid}/sync: the gateway writes its stored copy (contract §9)."""
import json

import pytest

import models
from conftest import OTHER_SESSION_ID, SESSION_ID, add_chats, chat_url, connected, error_body, stored

SYNC_URL = f"/api/v1/sessions/{SESSION_ID}/sync"
A, B, C = "1@s.whatsapp.net", "2@g.us", "3@lid"


def sync(client, headers, body, url=SYNC_URL):
    return client.post(url, json=body, headers=headers)


@connected
def stored_jids(session_id=SESSION_ID):
    return sorted(chat.jid for chat in models.Chat.select().where(models.Chat.session == session_id))


@connected
def tombstoned_jids(session_id=SESSION_ID):
    return sorted(t.jid for t in models.ChatTombstone.select().where(models.ChatTombstone.session == session_id))


def test_upsert_creates_with_defaults_and_merges_only_the_keys_sent(client, worker_headers):
    first = sync(client, worker_headers, {"upsert": [{"jid": A, "name": "Alice", "unreadCount": 2},
                                                     {"jid": B, "lastMessageAt": 1719662400000}]})
    assert first.status_code == 200
    assert first.get_json()["upserted"] == 2 and first.get_json()["deleted"] == 0
    assert isinstance(first.get_json()["since"], str)
    created = stored(B)
    assert (created["type"], created["name"], created["unread_count"], created["archived"], created["pinned"],
            created["muted_until"], created["last_message_at"]) == ("group", None, 0, False, False, None, 1719662400000)
    second = sync(client, worker_headers, {"upsert": [{"jid": A, "unreadCount": 0}]})
    assert second.get_json()["upserted"] == 1
    row = stored(A)
    assert (row["name"], row["unread_count"]) == ("Alice", 0)


def test_a_jid_repeated_in_upsert_merges_later_entries_key_by_key(client, worker_headers):
    response = sync(client, worker_headers, {"upsert": [{"jid": A, "name": "x", "unreadCount": 1},
                                                        {"jid": A, "unreadCount": 3}, {"jid": B},
                                                        {"jid": A, "name": "y"}]})
    assert response.status_code == 200 and response.get_json()["upserted"] == 2
    row = stored(A)
    assert (row["name"], row["unread_count"]) == ("y", 3)


def test_saved_get_responses_sync_as_they_are(client, worker_headers, headers):
    add_chats(SESSION_ID, {"jid": A, "name": "Alice", "lastMessageAt": 5})
    saved = client.get(chat_url(SESSION_ID, A), headers=headers).get_json()
    saved.update(name="Alicia", id=999, type="group", sessionId=OTHER_SESSION_ID)
    assert sync(client, worker_headers, {"upsert": [saved]}).status_code == 200
    row = stored(A)
    assert (row["name"], row["type"], row["session"]) == ("Alicia", "dm", SESSION_ID)


def test_patch_rules_do_not_apply_types_do(client, worker_headers):
    entries = [{"jid": f"{n}@s.whatsapp.net", "pinned": True, "archived": True, "mutedUntil": 5} for n in range(5)]
    response = sync(client, worker_headers, {"upsert": entries})
    assert response.status_code == 200 and response.get_json()["upserted"] == 5
    assert [stored(f"{n}@s.whatsapp.net")["pinned"] for n in range(5)] == [True] * 5


def test_delete_removes_the_chat_frees_its_pin_and_leaves_a_tombstone(client, worker_headers, headers):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net", "pinned": n < 3} for n in range(4)))
    response = sync(client, worker_headers, {"delete": ["0@s.whatsapp.net", "9@s.whatsapp.net"]})
    assert response.status_code == 200
    assert (response.get_json()["upserted"], response.get_json()["deleted"]) == (0, 1)
    gone = client.get(chat_url(SESSION_ID, "0@s.whatsapp.net"), headers=headers)
    assert gone.status_code == 404 and gone.get_json() == error_body("not_found", "chat not found")
    listed = client.get(chat_url(SESSION_ID), headers=headers).get_json()["data"]
    assert sorted(chat["jid"] for chat in listed) == ["1@s.whatsapp.net", "2@s.whatsapp.net", "3@s.whatsapp.net"]
    assert tombstoned_jids() == ["0@s.whatsapp.net"]
    pinned = client.patch(chat_url(SESSION_ID, "3@s.whatsapp.net"), json={"pinned": True}, headers=headers)
    assert pinned.status_code == 200 and pinned.get_json()["pinned"] is True


def test_a_deleted_chat_synced_again_is_a_new_chat_without_tombstone(client, worker_headers):
    add_chats(SESSION_ID, {"jid": A, "name": "Alice", "unreadCount": 4})
    sync(client, worker_headers, {"delete": [A]})
    response = sync(client, worker_headers, {"upsert": [{"jid": A, "unreadCount": 1}]})
    assert response.status_code == 200
    row = stored(A)
    assert (row["name"], row["unread_count"]) == (None, 1)
    assert tombstoned_jids() == []


def test_an_empty_body_object_writes_nothing_and_answers(client, worker_headers):
    response = sync(client, worker_headers, {})
    assert response.status_code == 200
    assert (response.get_json()["upserted"], response.get_json()["deleted"]) == (0, 0)


UNREAD_MESSAGE = ["Must be greater than or equal to 0 and less than or equal to 2147483647."]
JID_MESSAGE = ["is not a chat JID (user@s.whatsapp.net, @lid, @g.us, @broadcast or @newsletter)"]


@pytest.mark.parametrize("body, details", [
    ({"upsert": [{"jid": A}, {"jid": B}, {"jid": C}, {"jid": "4@s.whatsapp.net", "unreadCount": -1}]},
     {"upsert": {"3": {"unreadCount": UNREAD_MESSAGE}}}),
    ({"upsert": [{"jid": A, "archived": "true"}]}, {"upsert": {"0": {"archived": ["must be a JSON boolean: true or false"]}}}),
    ({"upsert": [{"jid": A, "muted": True}]}, {"upsert": {"0": {"muted": ["Unknown field."]}}}),
    ({"upsert": [{"name": "no jid"}]}, {"upsert": {"0": {"jid": ["Missing data for required field."]}}}),
    ({"upsert": [{"jid": "1@example.com"}]}, {"upsert": {"0": {"jid": JID_MESSAGE}}}),
    ({"upsert": ["1@s.whatsapp.net"]}, {"upsert": {"0": {"_schema": ["Invalid input type."]}}}),
    ({"upsert": {"jid": A}}, {"upsert": ["Not a valid list."]}),
    ({"delete": ["not-a-jid"]}, {"delete": {"0": JID_MESSAGE}}),
    ({"delete": [A, 5]}, {"delete": {"1": ["Not a valid string."]}}),
    ({"upsert": [{"jid": A}], "delete": [B, A]},
     {"delete": {"1": ["is also in upsert; a chat can't be upserted and deleted in one sync"]}}),
    ({"upsert": [{"jid": A}], "remove": [B]}, {"remove": ["Unknown field."]}),
    ({"upsert": [{"jid": f"{n}@s.whatsapp.net"} for n in range(600)],
      "delete": [f"{n}@g.us" for n in range(401)]},
     {"upsert": ["at most 1000 entries in upsert and delete together"],
      "delete": ["at most 1000 entries in upsert and delete together"]}),
])
def test_a_bad_entry_is_422_naming_it_and_nothing_is_written(client, worker_headers, body, details):
    add_chats(SESSION_ID, {"jid": B, "name": "kept"})
    response = sync(client, worker_headers, body)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"
    assert response.get_json()["error"]["details"] == details
    assert stored_jids() == [B] and stored(B)["name"] == "kept" and tombstoned_jids() == []


@pytest.mark.parametrize("raw", [b"", b"[]", b'"x"', b"{", b'{"upsert": NaN}'])
def test_a_body_that_is_not_a_json_object_is_422(client, worker_headers, raw):
    response = client.post(SYNC_URL, data=raw, headers=worker_headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"] == {"body": ["must be a JSON object"]}


def test_exactly_1000_entries_are_accepted(client, worker_headers):
    body = {"upsert": [{"jid": f"{n}@s.whatsapp.net"} for n in range(999)], "delete": ["9@g.us"]}
    response = sync(client, worker_headers, body)
    assert response.status_code == 200 and response.get_json()["upserted"] == 999


def test_a_body_over_sync_max_body_bytes_is_413(make_app, worker_headers):
    client = make_app(SYNC_MAX_BODY_BYTES="200").test_client()
    body = {"upsert": [{"jid": f"{n}@s.whatsapp.net"} for n in range(20)]}
    response = sync(client, worker_headers, body)
    assert response.status_code == 413
    assert response.get_json() == error_body("payload_too_large", "request body too large")
    assert stored_jids() == []


def test_the_default_limit_is_1_mib_not_max_body_bytes(client, worker_headers):
    body = {"upsert": [{"jid": f"{n}@s.whatsapp.net", "name": "x" * 200} for n in range(1000)]}
    assert 65536 < len(json.dumps(body)) < 1048576
    assert sync(client, worker_headers, body).status_code == 200
    over = {"upsert": [{"jid": "1@s.whatsapp.net", "name": "x" * 1048576}]}
    assert sync(client, worker_headers, over).status_code == 413


def test_order_of_checks_401_403_404_before_413_and_422(make_app, keys, worker_headers):
    client = make_app(SYNC_MAX_BODY_BYTES="50").test_client()
    bad = {"upsert": [{"jid": "x"}] * 10}
    assert sync(client, {}, bad).status_code == 401
    for capabilities in ("read,send", "read", "send"):
        response = sync(client, {"Authorization": f"Bearer {keys[capabilities]}"}, bad)
        assert response.status_code == 403
        assert response.get_json() == error_body("forbidden", "this token lacks the 'sync' capability")
    for session_id in (OTHER_SESSION_ID, "01J9ZX8K2QHV0M3T6R7P4N5W8E", "nope"):
        response = sync(client, worker_headers, bad, url=f"/api/v1/sessions/{session_id}/sync")
        assert response.status_code == 404
        assert response.get_json() == error_body("not_found", "session not found")
    assert sync(client, worker_headers, bad).status_code == 413
    assert sync(make_app().test_client(), worker_headers, bad).status_code == 422


def test_no_role_has_sync_by_default(make_app, identity_provider, orgs):
    client = make_app(ROLE_CAPABILITIES="").test_client()
    for role in ("owner", "admin", "member", "org:admin"):
        token = identity_provider.mint({"org_id": "acme", "org_role": role})
        response = sync(client, {"Authorization": f"Bearer {token}"}, {})
        assert response.status_code == 403


def test_another_orgs_session_is_untouched(client, worker_headers):
    add_chats(OTHER_SESSION_ID, {"jid": A, "name": "theirs"})
    response = sync(client, worker_headers, {"delete": [A]}, url=f"/api/v1/sessions/{OTHER_SESSION_ID}/sync")
    assert response.status_code == 404
    assert stored_jids(OTHER_SESSION_ID) == [A]
