"""Property-based: whatever a client sends, the answer is a documented status in the error envelope,
and the stored chat changes only on a 200."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SESSION_ID, add_chats, chat_url, stored

JID = "6281234567890@s.whatsapp.net"
URL = chat_url(SESSION_ID, JID)
ERROR_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 413: "payload_too_large",
               422: "validation_error"}
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_scalars = st.none() | st.booleans() | st.integers(min_value=-2 ** 70, max_value=2 ** 70) | \
    st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3) |
                           st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
field_names = st.sampled_from(["archived", "pinned", "mutedUntil", "unmute", "muted", "id", "unreadCount"]) | \
    st.text(max_size=10)
patch_values = st.one_of(json_values, st.just(-1), st.integers(min_value=1_700_000_000_000, max_value=2 ** 63))
patch_bodies = st.one_of(
    st.dictionaries(field_names, patch_values, max_size=4).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=30),
).map(lambda text: text.encode()) | st.binary(max_size=30)


@pytest.fixture
def chat(orgs):
    add_chats(SESSION_ID, {"jid": JID, "name": "Alice", "lastMessageAt": 1000})
    add_chats(SESSION_ID, *({"jid": f"{n}@g.us", "lastMessageAt": n} for n in range(5)))


def assert_envelope(response, allowed):
    assert response.status_code in allowed, (response.status_code, response.get_data())
    assert response.content_type == "application/json"
    if response.status_code >= 400:
        body = response.get_json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
        assert body["error"]["code"] == ERROR_CODES[response.status_code]
        assert isinstance(body["error"]["message"], str) and isinstance(body["error"]["details"], dict)


@SETTINGS
@given(body=patch_bodies)
def test_any_patch_body(client, headers, chat, body):
    before = stored(JID)
    response = client.patch(URL, data=body, headers=headers)
    assert_envelope(response, {200, 422})
    after = stored(JID)
    if response.status_code == 200:
        assert response.get_json()["id"] == after["id"]
        assert response.get_json()["archived"] == after["archived"]
        assert response.get_json()["mutedUntil"] == after["muted_until"]
    else:
        assert after == before


query_keys = st.sampled_from(["limit", "cursor", "archived", "pinned", "type", "other"])
query_values = st.text(max_size=12) | st.sampled_from(["true", "false", "dm", "group", "0", "-3", "500", ""])


@SETTINGS
@given(query=st.dictionaries(query_keys, query_values, max_size=4))
def test_any_list_query(client, headers, chat, query):
    response = client.get(chat_url(SESSION_ID), query_string=query, headers=headers)
    assert_envelope(response, {200, 422})
    if response.status_code == 422:
        assert set(response.get_json()["error"]["details"]) <= {"limit", "cursor", "archived", "pinned", "type"}


@SETTINGS
@given(edit=st.tuples(st.integers(min_value=0, max_value=200), st.text(min_size=1, max_size=3)))
def test_any_edited_cursor(client, headers, chat, edit):
    cursor = client.get(chat_url(SESSION_ID) + "?limit=2", headers=headers).get_json()["nextCursor"]
    position, text = edit
    position %= len(cursor) + 1
    edited = cursor[:position] + text + cursor[position:]
    response = client.get(chat_url(SESSION_ID), query_string={"cursor": edited}, headers=headers)
    assert_envelope(response, {200, 422})
    if response.status_code == 422:
        assert set(response.get_json()["error"]["details"]) == {"cursor"}


@SETTINGS
@given(header=st.text(max_size=80) | st.builds(lambda token: "Bearer " + token, st.text(max_size=60)) |
       st.builds(lambda a, b, c: f"Bearer {a}.{b}.{c}", st.text("ABCxyz-_09", max_size=20),
                 st.text("ABCxyz-_09", max_size=20), st.text("ABCxyz-_09", max_size=20)) |
       st.builds(lambda body: "Bearer csk_" + body, st.text("0123456789abcXYZ", max_size=60)))
def test_any_authorization_header(client, chat, header):
    if any(ord(char) > 255 or char in "\r\n\x00" for char in header):
        return  # not sendable as an HTTP header at all
    response = client.get(URL, headers={"Authorization": header})
    assert_envelope(response, {401})
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
