"""Listing: display order, clamped limit, signed keyset cursors, filters (contract §2)."""
import base64
import json
import random

import pytest

from conftest import OTHER_SESSION_ID, SESSION_ID, add_chats, chat_url, error_body

URL = chat_url(SESSION_ID)
SERVERS = ["s.whatsapp.net", "g.us", "lid", "broadcast", "newsletter"]


def many_chats(count, seed=7):
    """Chats with ties in lastMessageAt, no-message chats, and a few pinned and archived."""
    rng = random.Random(seed)
    for n in range(count):
        yield {
            "jid": f"{n}@{SERVERS[n % 5]}",
            "lastMessageAt": None if n % 9 == 0 else 1_700_000_000_000 + rng.randrange(0, 50) * 1000,
            "pinned": n in (5, 50, 500),
            "archived": n % 7 == 0,
        }


def display_key(chat):
    """The contract's order, written independently of the SQL."""
    no_message = chat["lastMessageAt"] is None
    return (not chat["pinned"], no_message, -(chat["lastMessageAt"] or 0), -chat["id"])


def assert_no_repeat(chats):
    """No chat twice: paging goes on while it holds (a cursor that led back to a page seen would loop forever)."""
    assert len({chat["id"] for chat in chats}) == len(chats), [chat["id"] for chat in chats]


def page_through(client, headers, limit, query=""):
    chats, cursor, pages = [], None, 0
    while True:
        url = f"{URL}?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert set(body) == {"data", "nextCursor"}
        chats += body["data"]
        assert_no_repeat(chats)
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            return chats, pages
        assert len(body["data"]) == limit


@pytest.fixture
def thousand(orgs):
    add_chats(SESSION_ID, *many_chats(1000))
    add_chats(OTHER_SESSION_ID, {"jid": "1@s.whatsapp.net"})


@pytest.fixture
def hundred(orgs):
    add_chats(SESSION_ID, *many_chats(100))


@pytest.mark.parametrize("limit", [1, 7, 50, 200])
def test_paging_1000_chats_returns_each_exactly_once_in_display_order(client, headers, thousand, limit):
    chats, pages = page_through(client, headers, limit)
    assert len(chats) == 1000
    assert len({chat["id"] for chat in chats}) == 1000
    assert chats == sorted(chats, key=display_key)
    assert pages == -(-1000 // limit)


def test_order_pinned_first_then_newest_then_no_message_then_id_desc(client, headers, orgs):
    add_chats(SESSION_ID,
              {"jid": "a@s.whatsapp.net", "lastMessageAt": 100},
              {"jid": "b@s.whatsapp.net", "lastMessageAt": None},
              {"jid": "c@s.whatsapp.net", "lastMessageAt": 300},
              {"jid": "d@s.whatsapp.net", "lastMessageAt": 100},
              {"jid": "e@s.whatsapp.net", "lastMessageAt": None, "pinned": True},
              {"jid": "f@s.whatsapp.net", "lastMessageAt": 50, "pinned": True},
              {"jid": "g@s.whatsapp.net", "lastMessageAt": None},
              {"jid": "h@g.us", "lastMessageAt": 200, "archived": True})
    body = client.get(URL, headers=headers).get_json()
    assert [chat["jid"].split("@")[0] for chat in body["data"]] == ["f", "e", "c", "h", "d", "a", "g", "b"]
    assert body["nextCursor"] is None


def test_chat_object_has_exactly_the_contract_keys(client, headers, orgs):
    add_chats(SESSION_ID, {"jid": "120363@g.us", "name": "Team", "lastMessageAt": 1719662400000,
                           "unreadCount": 3, "mutedUntil": -1})
    chat = client.get(URL, headers=headers).get_json()["data"][0]
    assert chat == {"id": chat["id"], "jid": "120363@g.us", "sessionId": SESSION_ID, "type": "group",
                    "name": "Team", "lastMessageAt": 1719662400000, "unreadCount": 3, "archived": False,
                    "pinned": False, "mutedUntil": -1}
    assert isinstance(chat["id"], int)
    # 0 == False in Python: the JSON types are checked on their own.
    assert type(chat["archived"]) is bool and type(chat["pinned"]) is bool


def test_full_last_page_says_null(client, headers, orgs):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(4)))
    first = client.get(f"{URL}?limit=2", headers=headers).get_json()
    second = client.get(f"{URL}?limit=2&cursor={first['nextCursor']}", headers=headers).get_json()
    assert len(second["data"]) == 2 and second["nextCursor"] is None
    exact = client.get(f"{URL}?limit=4", headers=headers).get_json()
    assert len(exact["data"]) == 4 and exact["nextCursor"] is None


def test_empty_session_is_an_empty_page(client, headers, orgs):
    assert client.get(URL, headers=headers).get_json() == {"data": [], "nextCursor": None}


@pytest.mark.parametrize("raw, size", [
    (None, 50), ("", 50), ("0", 50), ("1", 1), ("7", 7), ("200", 200), ("500", 200), ("-3", 1),
    ("+5", 5), ("007", 7), ("99999999999999999999999", 200),
])
def test_limit_is_clamped(client, headers, orgs, raw, size):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(250)))
    query = {} if raw is None else {"limit": raw}
    assert len(client.get(URL, query_string=query, headers=headers).get_json()["data"]) == size


@pytest.mark.parametrize("raw", ["abc", "1.5", "1e2", "0x10", " 5", "5 ", "--1", "٣"])
def test_limit_that_is_not_digits_is_422(client, headers, orgs, raw):
    response = client.get(URL, query_string={"limit": raw}, headers=headers)
    assert response.status_code == 422
    assert response.get_json() == error_body(
        "validation_error", "invalid limit", {"limit": ["must be a whole number (it is clamped to 1..200)"]})


def _first_cursor(client, headers, query=""):
    return client.get(f"{URL}?limit=2{query}", headers=headers).get_json()["nextCursor"]


def _edit_payload(cursor, edit):
    payload, mac = cursor.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edit(body)
    raw = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return raw + "." + mac


@pytest.mark.parametrize("tamper", [
    lambda c: "garbage",
    lambda c: "a.b.c",
    lambda c: "%%%",
    lambda c: c[:-3],
    lambda c: c[: len(c) // 2],
    lambda c: c.split(".")[0],
    lambda c: c + "x",
    lambda c: ("B" if c[0] != "B" else "C") + c[1:],
    lambda c: _edit_payload(c, lambda body: body[0].__setitem__(2, body[0][2] + 1)),
    lambda c: _edit_payload(c, lambda body: body.__setitem__(1, {"archived": True})),
    lambda c: "é" + c,
])
def test_cursor_not_issued_by_the_server_is_422(client, headers, hundred, tamper):
    cursor = tamper(_first_cursor(client, headers))
    response = client.get(URL, query_string={"cursor": cursor}, headers=headers)
    assert response.status_code == 422
    assert response.get_json() == error_body(
        "validation_error", "invalid cursor", {"cursor": ["cursor was not issued by this server for this listing"]})


def test_cursor_from_another_session_is_422(client, headers, tokens, hundred):
    add_chats(OTHER_SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(5)))
    other_headers = {"Authorization": f"Bearer {tokens['other']}"}
    foreign = client.get(f"{chat_url(OTHER_SESSION_ID)}?limit=2", headers=other_headers).get_json()["nextCursor"]
    response = client.get(URL, query_string={"cursor": foreign}, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"] == {
        "cursor": ["cursor was not issued by this server for this listing"]}


def test_cursor_is_keyed_by_secret_key(make_app, headers, hundred):
    cursor = _first_cursor(make_app(SECRET_KEY="one").test_client(), headers)
    assert make_app(SECRET_KEY="one").test_client().get(
        URL, query_string={"cursor": cursor}, headers=headers).status_code == 200
    response = make_app(SECRET_KEY="two").test_client().get(URL, query_string={"cursor": cursor}, headers=headers)
    assert response.status_code == 422


def test_chat_added_between_pages_causes_no_repeat_and_no_gap(client, headers, orgs):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net", "lastMessageAt": 1000 + n} for n in range(10)))
    first = client.get(f"{URL}?limit=4", headers=headers).get_json()
    # One chat lands before the cursor (newest), one after it (oldest).
    add_chats(SESSION_ID, {"jid": "new-top@s.whatsapp.net", "lastMessageAt": 5000},
              {"jid": "new-bottom@s.whatsapp.net", "lastMessageAt": 1})
    rest, cursor = [], first["nextCursor"]
    while cursor:
        page = client.get(f"{URL}?limit=4&cursor={cursor}", headers=headers).get_json()
        rest += page["data"]
        assert_no_repeat(rest)
        cursor = page["nextCursor"]
    seen = [chat["jid"].split("@")[0] for chat in first["data"] + rest]
    assert seen == [str(n) for n in range(9, -1, -1)] + ["new-bottom"]


@pytest.mark.parametrize("query, expected", [
    ("archived=true", lambda c: c["archived"]),
    ("archived=false", lambda c: not c["archived"]),
    ("pinned=true", lambda c: c["pinned"]),
    ("pinned=false", lambda c: not c["pinned"]),
    ("type=group", lambda c: c["type"] == "group"),
    ("type=dm", lambda c: c["type"] == "dm"),
    ("type=broadcast", lambda c: c["type"] == "broadcast"),
    ("type=newsletter", lambda c: c["type"] == "newsletter"),
    ("archived=false&type=dm&pinned=false", lambda c: not c["archived"] and c["type"] == "dm" and not c["pinned"]),
])
def test_filters_are_kept_by_the_cursor(client, headers, hundred, query, expected):
    everything, _ = page_through(client, headers, 200)
    wanted = [chat for chat in everything if expected(chat)]
    # Later pages are fetched with the cursor alone: its own filters apply.
    chats, cursor = [], None
    while True:
        url = f"{URL}?limit=30&{query}" if cursor is None else f"{URL}?limit=30&cursor={cursor}"
        body = client.get(url, headers=headers).get_json()
        chats += body["data"]
        assert_no_repeat(chats)
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert chats == wanted and wanted


def test_filters_repeated_with_their_cursor_are_accepted(client, headers, hundred):
    cursor = _first_cursor(client, headers, "&archived=false&type=dm")
    response = client.get(f"{URL}?limit=2&archived=false&type=dm&cursor={cursor}", headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize("query", ["archived=true", "type=group", "pinned=false", "archived=false&pinned=true"])
def test_filters_different_from_the_cursors_are_422_naming_cursor(client, headers, hundred, query):
    cursor = _first_cursor(client, headers, "&archived=false&type=dm")
    response = client.get(f"{URL}?{query}&cursor={cursor}", headers=headers)
    assert response.status_code == 422
    assert response.get_json() == error_body(
        "validation_error", "invalid cursor", {"cursor": ["filters differ from those the cursor was issued for"]})


@pytest.mark.parametrize("name, raw, message", [
    ("archived", "1", "must be true or false"),
    ("archived", "yes", "must be true or false"),
    ("archived", "True", "must be true or false"),
    ("archived", "", "must be true or false"),
    ("pinned", "0", "must be true or false"),
    ("type", "DM", "Must be one of: dm, group, broadcast, newsletter."),
    ("type", "channel", "Must be one of: dm, group, broadcast, newsletter."),
])
def test_filter_values_other_than_the_exact_words_are_422(client, headers, orgs, name, raw, message):
    response = client.get(URL, query_string={name: raw}, headers=headers)
    assert response.status_code == 422
    assert response.get_json() == error_body("validation_error", f"invalid {name}", {name: [message]})


def test_unknown_query_parameters_are_ignored(client, headers, orgs):
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    response = client.get(f"{URL}?foo=bar&sort=name", headers=headers)
    assert response.status_code == 200 and len(response.get_json()["data"]) == 1


@pytest.mark.parametrize("sid", ["not-a-ulid", "01J9ZX8K2QHV0M3T6R7P4N5W8", "81J9ZX8K2QHV0M3T6R7P4N5W8C",
                                 "01J9ZX8K2QHV0M3T6R7P4N5W8U"])
def test_session_id_that_is_not_a_ulid_is_404(client, headers, orgs, sid):
    response = client.get(chat_url(sid), headers=headers)
    assert response.status_code == 404
    assert response.get_json() == error_body("not_found", "session not found")


def test_lowercase_session_id_finds_the_session(client, headers, orgs):
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    body = client.get(chat_url(SESSION_ID.lower()), headers=headers).get_json()
    assert [chat["sessionId"] for chat in body["data"]] == [SESSION_ID]


@pytest.mark.parametrize("query, names", [("limit=2&limit=3", ["limit"]), ("type=dm&type=dm", ["type"]),
                                          ("archived=true&archived=&pinned=true&pinned=true", ["archived", "pinned"])])
def test_a_parameter_given_twice_is_422(client, headers, orgs, query, names):
    response = client.get(f"{URL}?{query}&other=1&other=2", headers=headers)
    assert response.status_code == 422
    assert response.get_json() == error_body("validation_error", "invalid " + ", ".join(names),
                                             {name: ["given more than once"] for name in names})
