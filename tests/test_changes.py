"""GET /api/v1/sessions/{sid}/changes: what changed, in order, for frontends and the gateway worker (contract §10)."""
import datetime
import random
import time

import pytest

from store import feed, sql
import models
from conftest import OTHER_SESSION_ID, SESSION_ID, add_chats, apply_changes, chat_url, connected, error_body

CHANGES_URL = f"/api/v1/sessions/{SESSION_ID}/changes"
SYNC_URL = f"/api/v1/sessions/{SESSION_ID}/sync"
FUTURE = int(time.time() * 1000) + 86_400_000
SINCE_MESSAGE = ["since was not issued by this server for this session's changes"]


def changes(client, headers, url=CHANGES_URL, **query):
    response = client.get(url, headers=headers, query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def follow(client, headers, copy, since=None, **query):
    """Apply pages to `copy` (jid -> Chat) until up to date; the last nextSince."""
    while True:
        page = changes(client, headers, **({"since": since} if since else {}), **query)
        apply_changes(copy, page)
        since = page["nextSince"]
        if not page["hasMore"]:
            return since


def current_state(client, headers):
    """Every stored chat of the session, as the list returns them."""
    state, cursor = {}, None
    while True:
        page = client.get(chat_url(SESSION_ID), headers=headers,
                          query_string={"limit": 200, **({"cursor": cursor} if cursor else {})}).get_json()
        state.update((chat["jid"], chat) for chat in page["data"])
        cursor = page["nextCursor"]
        if cursor is None:
            return state


def test_from_nothing_it_is_a_full_sync_then_up_to_date(client, headers, orgs):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net", "name": f"chat {n}"} for n in range(5)))
    page = changes(client, headers)
    assert page["hasMore"] is False
    assert sorted(change["jid"] for change in page["data"]) == [f"{n}@s.whatsapp.net" for n in range(5)]
    first = page["data"][0]
    assert set(first) == {"jid", "deleted", "changedBy", "chat"}
    assert (first["deleted"], first["changedBy"]) == (False, "sync")
    assert first["chat"] == client.get(chat_url(SESSION_ID, first["jid"]), headers=headers).get_json()
    again = changes(client, headers, since=page["nextSince"])
    assert again == {"data": [], "nextSince": page["nextSince"], "hasMore": False}


def test_an_empty_session_and_an_empty_since_start_at_the_beginning(client, headers, orgs):
    empty = changes(client, headers)
    assert empty["data"] == [] and empty["hasMore"] is False
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    assert [c["jid"] for c in changes(client, headers, since="")["data"]] == ["1@s.whatsapp.net"]
    assert [c["jid"] for c in changes(client, headers, since=empty["nextSince"])["data"]] == ["1@s.whatsapp.net"]


def test_paging_with_limit_returns_each_change_once(client, headers, orgs):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(25)))
    seen, since, pages = [], None, 0
    while True:
        page = changes(client, headers, limit=7, **({"since": since} if since else {}))
        pages += 1
        seen.extend(change["jid"] for change in page["data"])
        since = page["nextSince"]
        if not page["hasMore"]:
            break
    assert pages == 4 and sorted(seen) == sorted(f"{n}@s.whatsapp.net" for n in range(25))


def test_patch_is_api_and_moves_the_chat_to_the_end(client, headers, worker_headers):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(3)))
    since = changes(client, headers)["nextSince"]
    assert client.patch(chat_url(SESSION_ID, "0@s.whatsapp.net"), json={"archived": True},
                        headers=headers).status_code == 200
    client.post(SYNC_URL, json={"upsert": [{"jid": "1@s.whatsapp.net", "unreadCount": 9}]}, headers=worker_headers)
    page = changes(client, headers, since=since)
    assert [(c["jid"], c["changedBy"]) for c in page["data"]] == [("0@s.whatsapp.net", "api"),
                                                                  ("1@s.whatsapp.net", "sync")]
    assert page["data"][0]["chat"]["archived"] is True and page["data"][1]["chat"]["unreadCount"] == 9
    full = changes(client, headers)
    assert [c["jid"] for c in full["data"]] == ["2@s.whatsapp.net", "0@s.whatsapp.net", "1@s.whatsapp.net"]


def test_changed_by_api_skips_the_workers_own_writes_and_advances_past_them(client, headers, worker_headers):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(3)))
    client.patch(chat_url(SESSION_ID, "2@s.whatsapp.net"), json={"mutedUntil": FUTURE}, headers=headers)
    page = changes(client, headers, changedBy="api")
    assert [(c["jid"], c["changedBy"], c["chat"]["mutedUntil"]) for c in page["data"]] == [
        ("2@s.whatsapp.net", "api", FUTURE)]
    written = client.post(SYNC_URL, json={"upsert": [{"jid": "0@s.whatsapp.net", "name": "own"}]},
                          headers=worker_headers).get_json()
    after = changes(client, headers, since=page["nextSince"], changedBy="api")
    assert after["data"] == [] and after["hasMore"] is False
    assert changes(client, headers, since=after["nextSince"]) == {
        "data": [], "nextSince": after["nextSince"], "hasMore": False}
    assert changes(client, headers, since=written["since"]) == {
        "data": [], "nextSince": written["since"], "hasMore": False}
    only_sync = changes(client, headers, changedBy="sync")
    assert sorted(c["jid"] for c in only_sync["data"]) == ["0@s.whatsapp.net", "1@s.whatsapp.net"]


def test_a_filtered_page_stops_at_limit_and_says_more_is_waiting(client, headers, orgs):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(6)))
    for n in range(4):
        client.patch(chat_url(SESSION_ID, f"{n}@s.whatsapp.net"), json={"archived": True}, headers=headers)
    first = changes(client, headers, changedBy="api", limit=3)
    assert [c["jid"] for c in first["data"]] == [f"{n}@s.whatsapp.net" for n in range(3)]
    assert first["hasMore"] is True
    second = changes(client, headers, changedBy="api", limit=3, since=first["nextSince"])
    assert [c["jid"] for c in second["data"]] == ["3@s.whatsapp.net"] and second["hasMore"] is False


def test_a_deleted_chat_is_a_tombstone_and_a_full_sync_keeps_it(client, headers, worker_headers):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(3)))
    since = changes(client, headers)["nextSince"]
    client.post(SYNC_URL, json={"delete": ["1@s.whatsapp.net"]}, headers=worker_headers)
    page = changes(client, headers, since=since)
    assert page["data"] == [{"jid": "1@s.whatsapp.net", "deleted": True, "changedBy": "sync", "chat": None}]
    full = changes(client, headers)
    assert [(c["jid"], c["deleted"]) for c in full["data"]] == [
        ("0@s.whatsapp.net", False), ("2@s.whatsapp.net", False), ("1@s.whatsapp.net", True)]


def test_a_chat_deleted_then_synced_again_appears_once(client, headers, worker_headers):
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    client.post(SYNC_URL, json={"delete": ["1@s.whatsapp.net"]}, headers=worker_headers)
    client.post(SYNC_URL, json={"upsert": [{"jid": "1@s.whatsapp.net", "name": "back"}]}, headers=worker_headers)
    page = changes(client, headers)
    assert [(c["jid"], c["deleted"], c["chat"]["name"]) for c in page["data"]] == [("1@s.whatsapp.net", False, "back")]


@pytest.mark.parametrize("tamper", [
    lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
    lambda token: token[:5],
    lambda token: "x" + token,
    lambda token: "garbage",
    lambda token: token.split(".")[0],
    lambda token: "☃",
])
def test_a_since_not_issued_by_the_server_is_422(client, headers, orgs, tamper):
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    since = changes(client, headers)["nextSince"]
    response = client.get(CHANGES_URL, headers=headers, query_string={"since": tamper(since)})
    assert response.status_code == 422
    assert response.get_json() == error_body("validation_error", "invalid since", {"since": SINCE_MESSAGE})


def test_a_since_from_another_session_or_a_list_cursor_is_422(client, headers, keys, orgs):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(3)))
    add_chats(OTHER_SESSION_ID, {"jid": "1@s.whatsapp.net"})
    other = {"Authorization": f"Bearer {keys['other']}"}
    their_since = changes(client, other, url=f"/api/v1/sessions/{OTHER_SESSION_ID}/changes")["nextSince"]
    cursor = client.get(chat_url(SESSION_ID), headers=headers, query_string={"limit": 1}).get_json()["nextCursor"]
    for token in (their_since, cursor):
        response = client.get(CHANGES_URL, headers=headers, query_string={"since": token})
        assert response.status_code == 422 and response.get_json()["error"]["details"] == {"since": SINCE_MESSAGE}


@pytest.mark.parametrize("query, details", [
    ({"limit": "abc"}, {"limit": ["must be a whole number (it is clamped to 1..1000)"]}),
    ({"changedBy": "API"}, {"changedBy": ["Must be one of: api, sync."]}),
])
def test_a_bad_query_is_422_naming_the_parameter(client, headers, orgs, query, details):
    response = client.get(CHANGES_URL, headers=headers, query_string=query)
    assert response.status_code == 422 and response.get_json()["error"]["details"] == details


@pytest.mark.parametrize("raw, size", [("5000", 1000), ("-3", 1), ("0", 100), ("", 100)])
def test_limit_is_clamped_to_1_to_1000(client, headers, orgs, raw, size):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(1001)))
    assert len(changes(client, headers, limit=raw)["data"]) == size


def test_isolation_and_capabilities(client, tokens, orgs):
    for session_id in (OTHER_SESSION_ID, "01J9ZX8K2QHV0M3T6R7P4N5W8E", "nope"):
        response = client.get(f"/api/v1/sessions/{session_id}/changes?since=bad",
                              headers={"Authorization": f"Bearer {tokens['read']}"})
        assert response.status_code == 404 and response.get_json() == error_body("not_found", "session not found")
    response = client.get(CHANGES_URL, headers={"Authorization": f"Bearer {tokens['send']}"})
    assert response.status_code == 403
    assert response.get_json() == error_body("forbidden", "this token lacks the 'read' capability")
    assert client.get(CHANGES_URL).status_code == 401


@connected
def backdate_tombstones(days):
    models.ChatTombstone.update(deleted_at=models.now_utc() - datetime.timedelta(days=days)).execute()


def test_purged_tombstones_make_an_older_since_gone(client, headers, worker_headers, runner):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(3)))
    before = changes(client, headers)["nextSince"]
    client.post(SYNC_URL, json={"delete": ["0@s.whatsapp.net"]}, headers=worker_headers)
    after_delete = changes(client, headers, since=before)["nextSince"]
    assert runner.invoke(args=["purge-tombstones"]).stdout == "0\n"
    backdate_tombstones(31)
    result = runner.invoke(args=["purge-tombstones"])
    assert (result.exit_code, result.stdout) == (0, "1\n")
    gone = client.get(CHANGES_URL, headers=headers, query_string={"since": before})
    assert gone.status_code == 410
    assert gone.get_json() == error_body("gone", "changes older than this since token have been purged, so a "
                                         "deletion may have been missed; start again without since (a full sync)")
    assert changes(client, headers, since=after_delete)["data"] == []
    assert sorted(c["jid"] for c in changes(client, headers)["data"]) == ["1@s.whatsapp.net", "2@s.whatsapp.net"]


def test_tombstone_retention_days_is_read_from_the_environment(make_app, worker_headers, orgs):
    app = make_app(TOMBSTONE_RETENTION_DAYS="3")
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    app.test_client().post(SYNC_URL, json={"delete": ["1@s.whatsapp.net"]}, headers=worker_headers)
    backdate_tombstones(2)
    assert app.test_cli_runner().invoke(args=["purge-tombstones"]).stdout == "0\n"
    backdate_tombstones(4)
    assert app.test_cli_runner().invoke(args=["purge-tombstones"]).stdout == "1\n"


def test_a_follower_ends_with_exactly_the_stored_state(client, headers, worker_headers):
    """Random PATCHes, upserts and deletes between the follower's reads."""
    rng = random.Random(7)
    jids = [f"{n}@s.whatsapp.net" for n in range(40)]
    copy, since = {}, None
    for step in range(30):
        for _ in range(rng.randrange(1, 6)):
            jid = rng.choice(jids)
            action = rng.random()
            if action < 0.4:
                client.post(SYNC_URL, json={"upsert": [{"jid": jid, "unreadCount": rng.randrange(9)}]},
                            headers=worker_headers)
            elif action < 0.6:
                client.post(SYNC_URL, json={"delete": [jid]}, headers=worker_headers)
            else:
                client.patch(chat_url(SESSION_ID, jid), json={"archived": rng.random() < 0.5}, headers=headers)
        since = follow(client, headers, copy, since, limit=rng.choice([1, 3, 100]))
    assert copy == current_state(client, headers)


def test_a_page_walks_the_change_order_indexes_from_its_position(client, worker_headers):
    """Its cost does not grow with the session's size or with how far back the position is."""
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(20_000)))
    add_chats(OTHER_SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(5_000)))
    client.post(SYNC_URL, json={"delete": [f"{n}@s.whatsapp.net" for n in range(0, 1000, 3)]}, headers=worker_headers)
    sqlite = not models.on_postgresql()
    with models.database.connection_context():
        models.database.execute_sql("ANALYZE")
        text = ("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + feed.CHANGES_SQL
        cursor = sql.execute(text, {"session_id": SESSION_ID, "since": 10_000, "count": 101})
        plan = "\n".join(" ".join(str(part) for part in row) for row in cursor.fetchall())
    assert "chat_session_id_change_seq" in plan and "chat_tombstone_session_id_change_seq" in plan, plan
    if sqlite:
        assert "SCAN chat\n" not in plan + "\n" and "SCAN chat_tombstone\n" not in plan + "\n", plan
    else:
        assert "Seq Scan" not in plan and "Bitmap" not in plan, plan
