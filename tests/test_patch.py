"""PATCH: strict partial update under WhatsApp's rules (contract §3)."""
import time

import pytest

from conftest import SESSION_ID, add_chats, chat_url, error_body, stored

JID = "6281234567890@s.whatsapp.net"
URL = chat_url(SESSION_ID, JID)
FUTURE = int(time.time() * 1000) + 86_400_000
MUTE_MESSAGE = "must be Unix epoch milliseconds in the future (not seconds), or -1 to mute forever"
BOOLEAN_MESSAGE = "must be a JSON boolean: true or false"
INTEGER_MESSAGE = "must be a JSON integer"
NOT_OBJECT = {"body": ["must be a JSON object"]}


@pytest.fixture
def chat(orgs):
    add_chats(SESSION_ID, {"jid": JID, "name": "Alice", "lastMessageAt": 1719662400000, "unreadCount": 3})
    return stored(JID)


def patch(client, headers, body, url=URL):
    return client.patch(url, json=body, headers=headers)


def as_chat(row):
    return {"id": row["id"], "jid": row["jid"], "sessionId": row["session"], "type": row["type"],
            "name": row["name"], "lastMessageAt": row["last_message_at"], "unreadCount": row["unread_count"],
            "archived": row["archived"], "pinned": row["pinned"], "mutedUntil": row["muted_until"]}


@pytest.mark.parametrize("body, changed", [
    ({"archived": True}, {"archived": True}),
    ({"pinned": True}, {"pinned": True}),
    ({"mutedUntil": FUTURE}, {"mutedUntil": FUTURE}),
    ({"mutedUntil": -1}, {"mutedUntil": -1}),
    ({"mutedUntil": 2 ** 63 - 1}, {"mutedUntil": 2 ** 63 - 1}),
    ({"unmute": False}, {}),
    ({}, {}),
    ({"archived": False, "pinned": True, "mutedUntil": FUTURE},
     {"pinned": True, "mutedUntil": FUTURE}),
])
def test_only_the_fields_sent_change(client, headers, chat, body, changed):
    before = as_chat(chat)
    response = patch(client, headers, body)
    assert response.status_code == 200
    assert response.get_json() == {**before, **changed}
    assert as_chat(stored(JID)) == {**before, **changed}


def test_unmute_clears_the_mute_and_beats_muted_until(client, headers, chat):
    patch(client, headers, {"mutedUntil": -1})
    response = patch(client, headers, {"unmute": True, "mutedUntil": FUTURE})
    assert response.status_code == 200 and response.get_json()["mutedUntil"] is None
    assert stored(JID)["muted_until"] is None


def test_unmute_false_leaves_the_mute(client, headers, chat):
    patch(client, headers, {"mutedUntil": FUTURE})
    assert patch(client, headers, {"unmute": False}).get_json()["mutedUntil"] == FUTURE


def test_body_is_json_whatever_the_content_type(client, headers, chat):
    response = client.patch(URL, data='{"archived": true}', headers=headers)
    assert response.status_code == 200 and response.get_json()["archived"] is True
    response = client.patch(URL, data='{"archived": false}', content_type="text/plain", headers=headers)
    assert response.status_code == 200 and response.get_json()["archived"] is False


@pytest.mark.parametrize("raw, message", [
    ("", "body is not valid JSON"),
    ("{", "body is not valid JSON"),
    ("not json", "body is not valid JSON"),
    ('{"archived": NaN}', "body is not valid JSON"),
    (b"\xff\xfe", "body is not valid JSON"),
    ("[]", "body must be a JSON object"),
    ('[{"archived": true}]', "body must be a JSON object"),
    ('"archived"', "body must be a JSON object"),
    ("true", "body must be a JSON object"),
    ("null", "body must be a JSON object"),
    ("12", "body must be a JSON object"),
])
def test_body_that_is_not_a_json_object_is_422(client, headers, chat, raw, message):
    response = client.patch(URL, data=raw, content_type="application/json", headers=headers)
    assert response.status_code == 422
    assert response.get_json() == error_body("validation_error", message, NOT_OBJECT)
    assert stored(JID) == chat


@pytest.mark.parametrize("field, value, message", [
    ("archived", "true", BOOLEAN_MESSAGE),
    ("archived", 1, BOOLEAN_MESSAGE),
    ("archived", 0, BOOLEAN_MESSAGE),
    ("archived", None, "Field may not be null."),
    ("pinned", "false", BOOLEAN_MESSAGE),
    ("pinned", 1.5, BOOLEAN_MESSAGE),
    ("unmute", 1, BOOLEAN_MESSAGE),
    ("unmute", "yes", BOOLEAN_MESSAGE),
    ("unmute", None, "Field may not be null."),
    ("mutedUntil", str(FUTURE), INTEGER_MESSAGE),
    ("mutedUntil", FUTURE + 0.5, INTEGER_MESSAGE),
    ("mutedUntil", float(FUTURE), INTEGER_MESSAGE),
    ("mutedUntil", True, INTEGER_MESSAGE),
    ("mutedUntil", None, "Field may not be null."),
    ("mutedUntil", [FUTURE], INTEGER_MESSAGE),
    ("mutedUntil", 2 ** 63, "must fit in a signed 64-bit integer"),
    ("mutedUntil", int(time.time()) + 3600, MUTE_MESSAGE),   # seconds, not milliseconds
    ("mutedUntil", 1719662400000, MUTE_MESSAGE),             # in the past
    ("mutedUntil", 0, MUTE_MESSAGE),
    ("mutedUntil", -2, MUTE_MESSAGE),
    ("mutedUntil", -FUTURE, MUTE_MESSAGE),
])
def test_wrong_type_or_value_is_422_naming_the_field_and_changes_nothing(client, headers, chat, field, value,
                                                                           message):
    response = patch(client, headers, {field: value, "archived": True} if field != "archived" else {field: value})
    assert response.status_code == 422
    assert response.get_json() == error_body("validation_error", f"invalid {field}", {field: [message]})
    assert stored(JID) == chat


def test_validation_comes_before_unmute(client, headers, chat):
    patch(client, headers, {"mutedUntil": -1})
    muted = stored(JID)
    response = patch(client, headers, {"unmute": True, "mutedUntil": "x"})
    assert response.status_code == 422
    assert response.get_json()["error"]["details"] == {"mutedUntil": [INTEGER_MESSAGE]}
    assert stored(JID) == muted


def test_unknown_fields_are_422_naming_each(client, headers, chat):
    response = patch(client, headers, {"archived": True, "muted": True, "unreadCount": 0, "id": 1,
                                       "sessionId": SESSION_ID})
    assert response.status_code == 422
    assert response.get_json() == error_body(
        "validation_error", "invalid id, muted, sessionId, unreadCount",
        {name: ["Unknown field."] for name in ("muted", "unreadCount", "id", "sessionId")})
    assert stored(JID) == chat


def test_archiving_unpins(client, headers, chat):
    patch(client, headers, {"pinned": True})
    response = patch(client, headers, {"archived": True})
    assert response.status_code == 200
    assert (response.get_json()["archived"], response.get_json()["pinned"]) == (True, False)
    assert (stored(JID)["archived"], stored(JID)["pinned"]) == (True, False)


def test_archive_and_pin_together_is_422_naming_pinned(client, headers, chat):
    response = patch(client, headers, {"archived": True, "pinned": True})
    assert response.status_code == 422
    assert response.get_json() == error_body(
        "validation_error", "invalid pinned", {"pinned": ["an archived chat can't be pinned: archiving unpins"]})
    assert stored(JID) == chat


ARCHIVED_PIN = ("an archived chat can't be pinned; send \"archived\": false with it to unarchive and pin")


def test_pinning_a_chat_that_stays_archived_is_422(client, headers, chat):
    patch(client, headers, {"archived": True, "mutedUntil": -1})
    archived = stored(JID)
    response = patch(client, headers, {"pinned": True, "mutedUntil": FUTURE})
    assert response.status_code == 422
    assert response.get_json() == error_body("validation_error", ARCHIVED_PIN, {"pinned": [ARCHIVED_PIN]})
    assert stored(JID) == archived


def test_unarchive_and_pin_together_moves_it_back_pinned(client, headers, chat):
    patch(client, headers, {"archived": True})
    response = patch(client, headers, {"archived": False, "pinned": True})
    assert response.status_code == 200
    assert (response.get_json()["archived"], response.get_json()["pinned"]) == (False, True)


def _pin_limit_message(limit):
    return f"at most {limit} chats can be pinned at once; unpin one first"


def test_pin_limit_is_three_and_repinning_is_not_one_more(client, headers, orgs):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(5)))
    for n in range(3):
        assert patch(client, headers, {"pinned": True}, chat_url(SESSION_ID, f"{n}@s.whatsapp.net")).status_code == 200
    response = patch(client, headers, {"pinned": True, "mutedUntil": -1}, chat_url(SESSION_ID, "3@s.whatsapp.net"))
    assert response.status_code == 422
    assert response.get_json() == error_body("validation_error", _pin_limit_message(3),
                                             {"pinned": [_pin_limit_message(3)]})
    assert (stored("3@s.whatsapp.net")["pinned"], stored("3@s.whatsapp.net")["muted_until"]) == (False, None)
    assert patch(client, headers, {"pinned": True}, chat_url(SESSION_ID, "0@s.whatsapp.net")).status_code == 200
    assert patch(client, headers, {"pinned": False}, chat_url(SESSION_ID, "0@s.whatsapp.net")).status_code == 200
    assert patch(client, headers, {"pinned": True}, chat_url(SESSION_ID, "3@s.whatsapp.net")).status_code == 200


def test_pin_limit_follows_max_pinned_chats(make_app, headers, orgs):
    client = make_app(MAX_PINNED_CHATS="1").test_client()
    add_chats(SESSION_ID, {"jid": "0@s.whatsapp.net"}, {"jid": "1@s.whatsapp.net"})
    assert patch(client, headers, {"pinned": True}, chat_url(SESSION_ID, "0@s.whatsapp.net")).status_code == 200
    response = patch(client, headers, {"pinned": True}, chat_url(SESSION_ID, "1@s.whatsapp.net"))
    assert response.status_code == 422
    assert response.get_json()["error"]["details"] == {"pinned": [_pin_limit_message(1)]}


def test_pins_of_other_sessions_do_not_count(client, headers, orgs):
    from conftest import OTHER_SESSION_ID
    add_chats(OTHER_SESSION_ID, *({"jid": f"{n}@s.whatsapp.net", "pinned": True} for n in range(3)))
    add_chats(SESSION_ID, {"jid": JID})
    assert patch(client, headers, {"pinned": True}).status_code == 200


@pytest.mark.parametrize("cid, message", [
    ("0000@s.whatsapp.net", "chat not found"),
    ("not-a-jid", "chat not found"),
    ("6281234567890@example.com", "chat not found"),
])
def test_unknown_chat_is_404(client, headers, chat, cid, message):
    response = patch(client, headers, {"archived": True}, chat_url(SESSION_ID, cid))
    assert response.status_code == 404
    assert response.get_json() == error_body("not_found", message)


def test_body_over_the_limit_is_413_after_the_lookup(make_app, headers, chat):
    client = make_app(MAX_BODY_BYTES="64").test_client()
    big = '{"archived": true, "x": "' + "a" * 100 + '"}'
    response = client.patch(URL, data=big, headers=headers)
    assert response.status_code == 413
    assert response.get_json() == error_body("payload_too_large", "request body too large")
    missing = client.patch(chat_url(SESSION_ID, "0@s.whatsapp.net"), data=big, headers=headers)
    assert missing.status_code == 404
    assert stored(JID) == chat


def test_get_one_chat_with_jid_encoded_or_not(client, headers, chat):
    for cid in (JID, JID.replace("@", "%40")):
        response = client.get(chat_url(SESSION_ID, cid), headers=headers)
        assert response.status_code == 200
        assert response.get_json() == as_chat(chat)


@pytest.mark.parametrize("jid, chat_type", [
    ("1@s.whatsapp.net", "dm"), ("1@lid", "dm"), ("1-2@g.us", "group"), ("status@broadcast", "broadcast"),
    ("1@newsletter", "newsletter"),
])
def test_type_follows_the_jid_server(client, headers, orgs, jid, chat_type):
    add_chats(SESSION_ID, {"jid": jid})
    assert client.get(chat_url(SESSION_ID, jid), headers=headers).get_json()["type"] == chat_type
