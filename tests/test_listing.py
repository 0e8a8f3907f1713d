"""Listing: display order, clamped limit, signed keyset cursors, filters (contract §2)."""
import base64
import os
import json
import random
import types

import peewee
import pytest

from store import feed
from store import sql as store_sql
import models
from store import pages
from store import reads
from auth import api_key_digest
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


def _plan(sql, params):
    cursor = store_sql.execute(("EXPLAIN QUERY PLAN " if _is_sqlite() else "EXPLAIN ") + sql, params)
    return "\n".join(" ".join(str(part) for part in row) for row in cursor.fetchall())


def _is_sqlite():
    return isinstance(models.database.obj, peewee.SqliteDatabase)


@pytest.mark.parametrize("owner", [reads.Owner(org_id="acme"), reads.Owner(key_digest="x" * 64, capability="read")])
@pytest.mark.parametrize("shape", ["one chat", "session only", "changes"])
def test_no_read_scans_the_chats(app, orgs, owner, shape):
    """Every read reaches chats through an index, whatever the table's size (a body SQLite folded into the
    join once scanned every chat to find none)."""
    add_chats(SESSION_ID, *many_chats(200))
    add_chats(OTHER_SESSION_ID, *many_chats(200, seed=8))
    with models.database.connection_context():
        models.database.execute_sql("ANALYZE")
        if not _is_sqlite():
            # On a small table PostgreSQL may rightly prefer a scan; what must hold is that an index can serve.
            models.database.execute_sql("SET enable_seqscan = off")
        if shape == "one chat":
            sql, params = reads.find_chat_statement(owner, SESSION_ID, "1@s.whatsapp.net")
        elif shape == "session only":
            sql, params = reads.session_state_statement(owner, SESSION_ID)
        else:
            sql, params = feed.changes_statement(owner, SESSION_ID, 5, 10)
        plan = _plan(sql, params)
        if not _is_sqlite():
            models.database.execute_sql("RESET enable_seqscan")
    assert "SCAN chat" not in plan and "Seq Scan on chat" not in plan, plan


def test_deep_page_walks_the_display_index_without_scan_or_sort(app, orgs):
    # Enough rows, spread over two sessions, that PostgreSQL's planner prefers the index.
    add_chats(SESSION_ID, *many_chats(20_000))
    add_chats(OTHER_SESSION_ID, *many_chats(5_000, seed=8))
    plans = []
    with models.database.connection_context():
        if not _is_sqlite():
            models.database.execute_sql("ANALYZE chat")
        else:
            models.database.execute_sql("ANALYZE")
        deep = models.Chat.select().where(models.Chat.session == SESSION_ID).order_by(
            *pages.display_order()).offset(15_000).limit(1).dicts().get()
        for owner in (reads.Owner(org_id="acme"), reads.Owner(key_digest="x" * 64, capability="read")):
            plans.append(_plan(*pages.page_statement(owner, SESSION_ID, {}, pages.display_position(deep["pinned"], deep["sort_at"], deep["id"]), 51)))
    for plan in plans:
        _assert_walks_the_display_index(plan)


def _assert_walks_the_display_index(plan):
    assert "chat_session_id_pinned_sort_at_id" in plan, plan
    if _is_sqlite():
        # Nothing is sorted: the page comes off the index in order, merged after the head's row.
        assert "TEMP B-TREE" not in plan, plan
        assert "SCAN chat\n" not in plan + "\n" and "SCAN t1\n" not in plan + "\n", plan
    else:
        # The page's LIMITs (the parameter's over the bound's) sit right on the backward index walk, so nothing
        # is ever sorted.
        assert "Seq Scan on chat" not in plan, plan
        lines = [line.strip() for line in plan.splitlines()]
        limit = next(n for n, line in enumerate(lines) if line.startswith("->  Limit"))
        assert lines[limit + 1].startswith("->  Limit"), plan
        assert lines[limit + 2].startswith("->  Index Scan Backward using chat_session_id_pinned_sort_at_id"), plan
        assert "Sort" not in plan, plan


@pytest.mark.parametrize("query, names", [("limit=2&limit=3", ["limit"]), ("type=dm&type=dm", ["type"]),
                                          ("archived=true&archived=&pinned=true&pinned=true", ["archived", "pinned"])])
def test_a_parameter_given_twice_is_422(client, headers, orgs, query, names):
    response = client.get(f"{URL}?{query}&other=1&other=2", headers=headers)
    assert response.status_code == 422
    assert response.get_json() == error_body("validation_error", "invalid " + ", ".join(names),
                                             {name: ["given more than once"] for name in names})


def chats_of(page):
    """A page read with its rows as dicts by column name."""
    return page._replace(rows=[dict(zip(pages.ROW_COLUMNS, row)) for row in page.rows])


@pytest.mark.parametrize("owner_kind", ["jwt", "key"])
def test_the_limit_never_cuts_the_head_even_below_pinned_chats(app, orgs, keys, owner_kind):
    """The head's row and the page share one statement (and on SQLite one LIMIT): with pinned chats first and a
    limit of exactly the session's chats, the head is still there and every chat comes back, in display order."""
    add_chats(SESSION_ID, *many_chats(12))
    owner = reads.Owner(org_id="acme") if owner_kind == "jwt" else \
        reads.Owner(key_digest=api_key_digest(keys["read"]), capability="read")
    with models.database.connection_context():
        expected = [chat["id"] for chat in models.Chat.select().where(models.Chat.session == SESSION_ID)
                    .order_by(*pages.display_order()).dicts()]
        for limit in (1, 2, 12):
            found = chats_of(pages.list_chats(owner, SESSION_ID, {}, None, limit))
            assert found.head["owned_session"] == SESSION_ID
            assert [chat["id"] for chat in found.rows] == expected[:limit]
    assert sum(chat["pinned"] for chat in found.rows) == 1 and found.rows[0]["pinned"]


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
                    reason="SQLite's page statement has an ORDER BY of its own (pages.page_statement)")
def test_a_page_is_put_in_order_whatever_order_the_rows_come_in(app, orgs, monkeypatch):
    """SQL promises no order for a UNION ALL without an ORDER BY: the head's row and the page's rows are told
    apart by the jid, and the page is sorted into display order, whichever order the driver hands them over."""
    add_chats(SESSION_ID, *many_chats(30))
    owner = reads.Owner(org_id="acme")
    with models.database.connection_context():
        expected = chats_of(pages.list_chats(owner, SESSION_ID, {}, None, 20))
        real_execute = models.database.obj.execute_read

        def shuffled(sql, params=None):
            rows = real_execute(sql, params).fetchall()
            random.Random(7).shuffle(rows)
            return types.SimpleNamespace(fetchall=lambda: rows)
        monkeypatch.setattr(models.database.obj, "execute_read", shuffled)
        found_rows = pages.list_chats(owner, SESSION_ID, {}, None, 20)
    found = chats_of(found_rows)
    assert found.head == expected.head and found.head["owned_session"] == SESSION_ID
    assert [chat["id"] for chat in found.rows] == [chat["id"] for chat in expected.rows]
    assert len(found.rows) == 20
    positions = [pages.row_position(row) for row in found_rows.rows]
    assert positions == sorted(positions, reverse=True)


def _statements_work(sql, params):
    """How much the database did for a statement: SQLite's virtual machine steps, or PostgreSQL's plan as run
    (EXPLAIN ANALYZE marks each node it never ran)."""
    if not _is_sqlite():
        rows = store_sql.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + sql, params)
        return "\n".join(row[0] for row in rows.fetchall())
    steps = [0]

    def count():
        steps[0] += 1
        return 0
    connection = models.database.connection()
    connection.set_progress_handler(count, 1)
    try:
        store_sql.execute(sql, params).fetchall()
    finally:
        connection.set_progress_handler(None, 1)
    return steps[0]


@pytest.mark.parametrize("owner", [reads.Owner(org_id="globex"),
                                   reads.Owner(key_digest="x" * 64, capability="read")])
@pytest.mark.parametrize("shape", ["page", "changes"])
def test_a_refused_read_never_reads_the_body(app, orgs, owner, shape):
    """Another org's session, or a key that does not exist: the gate is settled before the body is read, so the
    database does the same little work whatever the page size, and never touches a chat."""
    add_chats(SESSION_ID, *many_chats(400))
    work = []
    with models.database.connection_context():
        for size in (10, 200):
            if shape == "page":
                work.append(_statements_work(*pages.page_statement(owner, SESSION_ID, {}, None, size)))
            else:
                work.append(_statements_work(*feed.changes_statement(owner, SESSION_ID, 0, size)))
    if _is_sqlite():
        assert work[0] == work[1] and work[0] < 300, work
    else:
        for plan in work:
            scans = [line for line in plan.splitlines() if " on chat" in line or "on chat_tombstone" in line]
            assert scans and all("never executed" in line for line in scans), plan
