"""Round trips per request, counted at the driver: exactly one per authenticated GET, with an API key or a JWT.

Every statement a connection runs is counted, the pool's own (a checkout ping) included, so a ping or a
separate key lookup would show. The once-a-minute write of a key's last use is left out by a warm-up.
"""
import pytest

from store import change_order
import models
from store import reads
from store.sql import PARAMETER
from conftest import SESSION_ID, add_chats, chat_url
from counting import round_trips  # noqa: F401  (a fixture)

@pytest.mark.parametrize("url", [
    chat_url(SESSION_ID, "1@s.whatsapp.net"),
    chat_url(SESSION_ID) + "?limit=2",
    chat_url(SESSION_ID) + "?limit=2&type=dm&archived=false",
    f"/api/v1/sessions/{SESSION_ID}/changes?limit=2",
])
def test_one_round_trip_per_authenticated_get(client, tokens, headers, orgs, round_trips, url):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(5)))
    # Warm-up: records the key's last use, fetches the JWKS, loads the cursor key, opens the pooled connection.
    first = client.get(url, headers=headers).get_json()
    for _ in range(3):
        round_trips.clear()
        assert client.get(url, headers=headers).status_code == 200
        assert len(round_trips) == 1, round_trips
    following = first.get("nextCursor") or first.get("nextSince")
    if following:
        separator = "&cursor=" if "nextCursor" in first else "&since="
        round_trips.clear()
        assert client.get(url + separator + following, headers=headers).status_code == 200
        assert len(round_trips) == 1, round_trips


@pytest.mark.parametrize("status, url, token", [
    (404, chat_url("01J9ZX8K2QHV0M3T6R7P4N5W8D", "1@s.whatsapp.net"), "read,send"),
    (404, chat_url(SESSION_ID, "9@s.whatsapp.net"), "read,send"),
    (403, chat_url(SESSION_ID, "1@s.whatsapp.net"), "send"),
])
def test_refusals_cost_one_round_trip_too(client, tokens, orgs, round_trips, status, url, token):
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    headers = {"Authorization": f"Bearer {tokens[token]}"}
    client.get(url, headers=headers)
    round_trips.clear()
    assert client.get(url, headers=headers).status_code == status
    # A JWT's missing capability is known from the token alone: no read at all. An API key's comes with the read.
    expected = 0 if status == 403 and tokens[token].count(".") == 2 else 1
    assert len(round_trips) == expected, round_trips


def test_patch_writes_without_reading_the_chat_again(client, headers, orgs, round_trips, database_url):
    """PATCH without a pin to count or If-Match to compare: after the request's read, one statement draws the
    change position and writes the chat, holding the session's lock only that long (SQLite's write lock is
    taken by the transaction around it)."""
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    url = chat_url(SESSION_ID, "1@s.whatsapp.net")
    client.patch(url, headers=headers, json={"archived": True})
    round_trips.clear()
    response = client.patch(url, headers=headers, json={"archived": False})
    assert response.status_code == 200
    assert response.get_json()["archived"] is False
    writes = round_trips[1:]
    if database_url.startswith("sqlite"):
        assert writes[0] == "BEGIN IMMEDIATE" and writes[2] == "COMMIT" and len(writes) == 3, round_trips
        writes = writes[1:2]
    assert len(writes) == 1, round_trips
    assert writes[0].startswith('UPDATE "chat" SET "archived" = '), round_trips
    assert change_order.next_position_sql()[0].format(p=models.database.obj.param) in writes[0], round_trips
    assert writes[0].endswith('RETURNING ' + reads.CHAT_COLUMNS), round_trips


def test_patch_with_if_match_reads_the_locked_row(client, headers, orgs, round_trips):
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    url = chat_url(SESSION_ID, "1@s.whatsapp.net")
    etag = client.get(url, headers=headers).headers["ETag"]
    round_trips.clear()
    response = client.patch(url, headers={**headers, "If-Match": etag}, json={"archived": True})
    assert response.status_code == 200
    assert response.get_json()["archived"] is True and response.headers["ETag"] != etag
    # The position drawn (the session's lock), then the chat read under it to compare its ETag, then written.
    drawn = [n for n, sql in enumerate(round_trips)
             if sql.startswith("SELECT MAX((SELECT COALESCE(MAX(") or sql.startswith("SELECT nextval(")]
    read = [n for n, sql in enumerate(round_trips) if sql.startswith('SELECT') and 'FROM "chat"' in sql]
    assert len(drawn) == 1 and read and read[-1] > drawn[0], round_trips



def sqlite_program(sql, params=None):
    """The steps SQLite's compiled program for sql takes (EXPLAIN), with every parameter null by default."""
    with models.database.connection_context():
        return models.database.execute_sql("EXPLAIN " + sql, params or dict.fromkeys(PARAMETER.findall(sql))).fetchall()


def temporary_tables(program):
    return [step for step in program if step[1] == "OpenEphemeral"]


def test_sqlite_builds_no_temporary_table_to_read_one_chat(client, tokens, headers, orgs, round_trips, database_url):
    """A list of constants (`IN ('read', 'read,send', …)`) made SQLite build a b-tree and drop it on every run."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's query plan")
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    url = chat_url(SESSION_ID, "1@s.whatsapp.net")
    client.get(url, headers=headers)
    round_trips.clear()
    assert client.get(url, headers=headers).status_code == 200
    [sql] = round_trips
    assert temporary_tables(sqlite_program(sql)) == []


@pytest.mark.parametrize("capability", ["read", "send", "sync"])
def test_sqlite_checks_a_keys_capability_without_a_temporary_table(database_url, capability):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's query plan")
    program = sqlite_program('SELECT "api_key"."id" FROM "api_key" WHERE ' + reads.key_may(capability))
    assert [step for step in program if step[1] == "Eq"] != [] and temporary_tables(program) == []
