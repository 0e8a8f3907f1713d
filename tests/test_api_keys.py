"""An org admin's API keys over HTTP: made, listed, expired and revoked (POST/GET/DELETE /api/v1/api-keys)."""
import time

import pytest
import requests

import models
from auth import api_key_digest
from cli import issue_api_key
from conftest import SESSION_ID, add_chats, app_environ, chat_url, error_body
from serving import Gunicorn

KEYS_URL = "/api/v1/api-keys"
JID = "1@s.whatsapp.net"
KEY_FIELDS = {"id", "name", "capabilities", "createdAt", "lastUsedAt", "expiresAt", "revokedAt"}


@pytest.fixture
def admins(orgs, identity_provider):
    """Bearer headers of each kind of caller that may (or may not) manage acme's keys."""
    with models.database.connection_context():
        admin_key = issue_api_key("acme", "admin,read", "ops")
        reader_key = issue_api_key("acme", "read", "reader")
    bearer = lambda token: {"Authorization": f"Bearer {token}"}  # noqa: E731
    return {
        "jwt": bearer(identity_provider.mint({"org_id": "acme", "org_role": "admin"})),
        "key": bearer(admin_key),
        "viewer": bearer(identity_provider.mint({"org_id": "acme", "org_role": "viewer"})),
        "reader key": bearer(reader_key),
        "globex": bearer(identity_provider.mint({"org_id": "globex", "org_role": "org:admin"})),
    }


def make(client, headers, **body):
    return client.post(KEYS_URL, json={"name": "crm", "capabilities": ["read"], **body}, headers=headers)


@pytest.mark.parametrize("who", ["jwt", "key"])
def test_an_admin_mints_a_key_that_works_and_is_shown_once(client, admins, who):
    add_chats(SESSION_ID, {"jid": JID})
    made = make(client, admins[who], name="CRM, read-only", capabilities=["read", "send"])
    assert made.status_code == 201
    body = made.get_json()
    assert set(body) == KEY_FIELDS | {"key"}
    assert body["name"] == "CRM, read-only" and body["capabilities"] == ["read", "send"]
    assert body["lastUsedAt"] is None and body["expiresAt"] is None and body["revokedAt"] is None
    assert abs(body["createdAt"] - time.time() * 1000) < 60_000 and body["id"].isdigit()
    assert client.get(chat_url(SESSION_ID, JID), headers={"Authorization": f"Bearer {body['key']}"}).status_code == 200
    with models.database.connection_context():
        stored = models.ApiKey.get_by_id(int(body["id"]))
    assert stored.digest == api_key_digest(body["key"]) and body["key"] not in repr(stored.__data__)
    listed = client.get(KEYS_URL, headers=admins[who]).get_json()
    assert body["key"] not in str(listed) and api_key_digest(body["key"]) not in str(listed)
    assert listed["data"][0] == {name: value for name, value in body.items() if name != "key"} | {
        "lastUsedAt": listed["data"][0]["lastUsedAt"]}
    assert listed["data"][0]["lastUsedAt"] is not None  # the GET above used it


def test_a_key_made_with_admin_can_make_keys_of_its_own_org_only(client, admins):
    made = make(client, admins["jwt"], capabilities=["admin", "send", "read"]).get_json()
    assert made["capabilities"] == ["read", "send", "admin"]  # the API's order, not the stored (sorted) one
    second = make(client, {"Authorization": f"Bearer {made['key']}"}, capabilities=["sync", "read"])
    assert second.status_code == 201 and second.get_json()["capabilities"] == ["read", "sync"]
    theirs = client.get(KEYS_URL, headers=admins["globex"]).get_json()
    assert theirs == {"data": [], "nextCursor": None}


@pytest.mark.parametrize("who, status, code, message", [
    (None, 401, "unauthorized", "missing Authorization header; send Authorization: Bearer <token>"),
    ("viewer", 403, "forbidden", "this token lacks the 'admin' capability"),
    ("reader key", 403, "forbidden", "this token lacks the 'admin' capability"),
])
@pytest.mark.parametrize("method, url", [("POST", KEYS_URL), ("GET", KEYS_URL), ("DELETE", KEYS_URL + "/1"),
                                         ("DELETE", KEYS_URL + "/not-a-number")])
def test_401_then_403_before_anything_is_looked_up(client, admins, who, status, code, message, method, url):
    response = client.open(url, method=method, json={"name": 7}, headers=admins[who] if who else {})
    assert response.status_code == status
    assert response.get_json() == error_body(code, message)


def test_another_orgs_key_is_not_found_and_stays_live(client, admins, keys):
    with models.database.connection_context():
        theirs = models.ApiKey.get(models.ApiKey.digest == api_key_digest(keys["other"])).id
    for key_id in (str(theirs), "999999999", "0", "-1", "1e3", "9" * 30, "¹", "١٢"):
        response = client.delete(f"{KEYS_URL}/{key_id}", headers=admins["jwt"])
        assert response.status_code == 404, key_id
        assert response.get_json() == error_body("not_found", "API key not found")
    other_session = "01J9ZX8K2QHV0M3T6R7P4N5W8D"
    assert client.get(chat_url(other_session), headers={"Authorization": f"Bearer {keys['other']}"}).status_code == 200


def test_revocation_is_at_once_and_repeatable(client, admins):
    add_chats(SESSION_ID, {"jid": JID})
    made = make(client, admins["jwt"]).get_json()
    bearer = {"Authorization": f"Bearer {made['key']}"}
    assert client.get(chat_url(SESSION_ID, JID), headers=bearer).status_code == 200
    for _ in range(2):
        revoked = client.delete(f"{KEYS_URL}/{made['id']}", headers=admins["key"])
        assert (revoked.status_code, revoked.data) == (204, b"")
    refused = client.get(chat_url(SESSION_ID, JID), headers=bearer)
    assert refused.status_code == 401
    assert refused.get_json() == error_body("unauthorized", "API key has been revoked")
    [listed] = [key for key in client.get(KEYS_URL, headers=admins["jwt"]).get_json()["data"] if key["id"] == made["id"]]
    assert listed["revokedAt"] is not None


def test_an_expired_key_is_401_saying_so(client, admins):
    add_chats(SESSION_ID, {"jid": JID})
    expires_at = int(time.time() * 1000) + 1500
    made = make(client, admins["jwt"], expiresAt=expires_at).get_json()
    assert made["expiresAt"] == expires_at
    bearer = {"Authorization": f"Bearer {made['key']}"}
    assert client.get(chat_url(SESSION_ID, JID), headers=bearer).status_code == 200
    time.sleep(max(0, expires_at / 1000 - time.time()) + 0.1)
    for url in (chat_url(SESSION_ID, JID), chat_url(SESSION_ID), f"/api/v1/sessions/{SESSION_ID}/changes"):
        refused = client.get(url, headers=bearer)
        assert refused.status_code == 401, url
        assert refused.get_json() == error_body("unauthorized", "API key has expired")


@pytest.mark.parametrize("body, details", [
    ({"capabilities": ["read"]}, {"name": ["Missing data for required field."]}),
    ({"name": "x" * 101, "capabilities": ["read"]}, {"name": ["Length must be between 1 and 100."]}),
    ({"name": 5, "capabilities": ["read"]}, {"name": ["Not a valid string."]}),
    ({"name": "crm"}, {"capabilities": ["Missing data for required field."]}),
    ({"name": "crm", "capabilities": []}, {"capabilities": ["Shorter than minimum length 1."]}),
    ({"name": "crm", "capabilities": "read"}, {"capabilities": ["Not a valid list."]}),
    ({"name": "crm", "capabilities": ["read", "read"]}, {"capabilities": ["must not name a capability twice"]}),
    ({"name": "crm", "capabilities": ["root"]}, {"capabilities": {"0": ["Must be one of: read, send, sync, admin."]}}),
    ({"name": "crm", "capabilities": ["read", "read", "root"]},
     {"capabilities": {"2": ["Must be one of: read, send, sync, admin."]}}),
    ({"name": "crm", "capabilities": ["read"], "expiresAt": 1}, {"expiresAt": [
        "must be Unix epoch milliseconds in the future, or null"]}),
    ({"name": "crm", "capabilities": ["read"], "expiresAt": "2030"}, {"expiresAt": ["must be a JSON integer"]}),
    ({"name": "crm", "capabilities": ["read"], "expiresAt": 1.5e12}, {"expiresAt": ["must be a JSON integer"]}),
    ({"name": "crm", "capabilities": ["read"], "key": "csk_mine"}, {"key": ["Unknown field."]}),
    ([], {"body": ["must be a JSON object"]}),
])
def test_a_bad_body_is_422_naming_each_field_and_makes_no_key(client, admins, body, details):
    with models.database.connection_context():
        before = models.ApiKey.select().count()
    response = client.post(KEYS_URL, json=body, headers=admins["jwt"])
    assert response.status_code == 422
    message = "body must be a JSON object" if body == [] else "invalid " + ", ".join(sorted(details))
    assert response.get_json() == error_body("validation_error", message, details)
    with models.database.connection_context():
        assert models.ApiKey.select().count() == before


def test_a_body_over_the_limit_is_413(client, admins):
    response = client.post(KEYS_URL, data=b'{"name": "' + b"x" * 70_000 + b'"}', headers=admins["jwt"])
    assert response.status_code == 413
    assert response.get_json() == error_body("payload_too_large", "request body too large")


def test_the_list_pages_newest_first_with_a_signed_cursor(client, admins):
    made = [make(client, admins["jwt"], name=f"key {n}").get_json()["id"] for n in range(5)]
    seen, cursor = [], None
    while True:
        page = client.get(KEYS_URL, query_string={"limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers=admins["jwt"]).get_json()
        assert len(page["data"]) <= 2 and all(set(key) == KEY_FIELDS for key in page["data"])
        seen += [key["id"] for key in page["data"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    ids = [int(key_id) for key_id in seen]
    assert ids == sorted(ids, reverse=True) and set(made) <= set(seen) and len(seen) == len(set(seen)) == 7
    second = client.get(KEYS_URL, query_string={"limit": 2}, headers=admins["jwt"]).get_json()["nextCursor"]
    for bad in (second[:-2], second + "x", "garbage"):
        response = client.get(KEYS_URL, query_string={"cursor": bad}, headers=admins["jwt"])
        assert response.status_code == 422 and response.get_json()["error"]["details"] == {
            "cursor": ["cursor was not issued by this server for this listing"]}
    # Another org's list does not take acme's cursor.
    response = client.get(KEYS_URL, query_string={"cursor": second}, headers=admins["globex"])
    assert response.status_code == 422


def test_served_keys_are_minted_revoked_and_expire_in_every_worker(database_url, identity_provider, orgs,
                                                                   tmp_path):
    """Through gunicorn with 4 workers: a key minted by one worker works on all; revoked or expired, every worker
    refuses its very next request."""
    add_chats(SESSION_ID, {"jid": JID})
    served = Gunicorn(app_environ(database_url, identity_provider), tmp_path / "gunicorn.log", workers=4)
    admin = {"Authorization": "Bearer " + identity_provider.mint({"org_id": "acme", "org_role": "owner"})}
    url = served.base + chat_url(SESSION_ID, JID)
    try:
        expires_at = int(time.time() * 1000) + 3000
        made = [requests.post(served.base + KEYS_URL, json={"name": name, "capabilities": ["read"], **extra},
                              headers=admin, timeout=10) for name, extra in (("live", {}), ("brief", {
                                  "expiresAt": expires_at}))]
        assert [response.status_code for response in made] == [201, 201]
        live, brief = ({"Authorization": f"Bearer {response.json()['key']}"} for response in made)
        with requests.Session() as client:  # a new connection each time: the workers take turns
            assert {requests.get(url, headers=live, timeout=10).status_code for _ in range(12)} == {200}
            revoked = requests.delete(f"{served.base}{KEYS_URL}/{made[0].json()['id']}", headers=admin, timeout=10)
            assert revoked.status_code == 204
            refused = [requests.get(url, headers=live, timeout=10) for _ in range(12)]
            assert {(response.status_code, response.json()["error"]["message"]) for response in refused} == {
                (401, "API key has been revoked")}
            time.sleep(max(0, expires_at / 1000 - time.time()) + 0.1)
            expired = [requests.get(url, headers=brief, timeout=10) for _ in range(12)]
            assert {(response.status_code, response.json()["error"]["message"]) for response in expired} == {
                (401, "API key has expired")}
            listed = client.get(served.base + KEYS_URL, headers=admin, timeout=10).json()["data"]
            assert [key["name"] for key in listed] == ["brief", "live"] and listed[1]["revokedAt"] is not None
    finally:
        log = served.stop()
    assert "Traceback" not in log
    assert all(response.json()["key"] not in log for response in made)
