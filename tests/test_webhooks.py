"""An org admin's webhook endpoints over HTTP and the command line (contract §14): made with a secret shown once,
listed, read, changed, deleted, rotated, replayed; refused targets; the order of checks; secrets at rest."""
import time

import pytest
from cryptography.fernet import Fernet

import models
from app import create_app
from cli import issue_api_key
from config import ConfigError
from conftest import OTHER_SESSION_ID, SESSION_ID, add_chats, error_body, stored
from store.watch import latest_positions

WEBHOOKS_URL = "/api/v1/webhooks"
HOOK = "https://93.184.215.14/hooks/chatstore?team=7"  # a public address, never contacted by these tests
WEBHOOK_FIELDS = {"id", "url", "description", "sessions", "changedBy", "enabled", "disabledReason", "createdAt"}
REFUSED = ("the URL must not resolve to a loopback, private, link-local, shared (CGNAT), multicast, reserved or "
           "unspecified address")
TOO_LARGE = error_body("payload_too_large", "request body too large")
UNKNOWN_SESSIONS = {"sessions": ["names sessions that are not this organization's"]}


@pytest.fixture
def admins(orgs, identity_provider):
    with models.database.connection_context():
        admin_key = issue_api_key("acme", "admin,read", "ops")
        reader_key = issue_api_key("acme", "read,send,sync", "no admin")
    bearer = lambda token: {"Authorization": f"Bearer {token}"}  # noqa: E731
    return {
        "jwt": bearer(identity_provider.mint({"org_id": "acme", "org_role": "admin"})),
        "key": bearer(admin_key),
        "member": bearer(identity_provider.mint({"org_id": "acme", "org_role": "member"})),
        "no admin key": bearer(reader_key),
        "globex": bearer(identity_provider.mint({"org_id": "globex", "org_role": "org:admin"})),
    }


def make(client, headers, **body):
    return client.post(WEBHOOKS_URL, json={"url": HOOK, **body}, headers=headers)


def stored_webhook(webhook_id):
    with models.database.connection_context():
        return models.Webhook.get_by_id(int(webhook_id))


def streams_of(webhook_id):
    with models.database.connection_context():
        return {row["session"]: row for row in models.WebhookStream.select()
                .where(models.WebhookStream.webhook == int(webhook_id)).dicts()}


@pytest.mark.parametrize("who", ["jwt", "key"])
def test_an_admin_registers_an_endpoint_and_sees_its_secret_once(client, admins, who):
    made = make(client, admins[who], description="CRM", sessions=[SESSION_ID], changedBy="api")
    assert made.status_code == 201
    body = made.get_json()
    assert set(body) == WEBHOOK_FIELDS | {"secret"}
    assert body["secret"].startswith("whsec_") and len(body["secret"]) == 38
    assert {name: body[name] for name in WEBHOOK_FIELDS - {"id", "createdAt"}} == {
        "url": HOOK, "description": "CRM", "sessions": [SESSION_ID], "changedBy": "api", "enabled": True,
        "disabledReason": None}
    assert abs(body["createdAt"] - time.time() * 1000) < 60_000 and body["id"].isdigit()
    shown = client.get(f"{WEBHOOKS_URL}/{body['id']}", headers=admins[who])
    assert shown.status_code == 200
    assert shown.get_json() == {name: value for name, value in body.items() if name != "secret"}
    listed = client.get(WEBHOOKS_URL, headers=admins[who]).get_json()
    assert listed == {"data": [shown.get_json()], "nextCursor": None}
    assert body["secret"] not in shown.get_data(as_text=True) + str(listed)


def test_defaults_follow_every_session_and_every_change(client, admins):
    body = client.post(WEBHOOKS_URL, json={"url": HOOK}, headers=admins["jwt"]).get_json()
    assert (body["description"], body["sessions"], body["changedBy"]) == (None, None, None)


def test_session_ids_match_in_any_case_and_come_back_as_stored(client, admins):
    made = make(client, admins["jwt"], sessions=[SESSION_ID.lower()])
    assert made.status_code == 201 and made.get_json()["sessions"] == [SESSION_ID]


def test_a_new_endpoint_receives_what_commits_after_it(client, admins):
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"}, {"jid": "2@s.whatsapp.net"})
    made = make(client, admins["jwt"]).get_json()
    with models.database.connection_context():
        latest = latest_positions([SESSION_ID])[SESSION_ID]
    assert latest > 0
    assert {session: row["position"] for session, row in streams_of(made["id"]).items()} == {SESSION_ID: latest}


@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.1:8080/hook", REFUSED),
    ("http://localhost/hook", REFUSED),
    ("http://10.1.2.3/", REFUSED),
    ("http://172.16.0.1/", REFUSED),
    ("http://192.168.1.1/", REFUSED),
    ("http://169.254.169.254/latest/meta-data", REFUSED),
    ("http://100.64.0.1/", REFUSED),
    ("http://224.0.0.1/", REFUSED),
    ("http://0.0.0.0/", REFUSED),
    ("http://240.0.0.1/", REFUSED),
    ("http://[::1]/", REFUSED),
    ("http://[fe80::1]/", REFUSED),
    ("http://[fc00::1]/", REFUSED),
    ("http://[::ffff:10.0.0.1]/", REFUSED),
    ("ftp://93.184.215.14/", "the URL must be an http:// or https:// URL"),
    ("93.184.215.14/hook", "the URL must be an http:// or https:// URL"),
    ("https://user:pw@93.184.215.14/", "the URL must not carry credentials (user:password@)"),
    ("https:///path", "the URL must name a host"),
    ("http://93.184.215.14:99999/", "the URL is not a valid URL"),
])
def test_a_refused_target_is_422_naming_url_and_stores_nothing(client, admins, url, reason):
    response = make(client, admins["jwt"], url=url)
    assert response.status_code == 422
    assert response.get_json() == error_body("validation_error", "invalid url", {"url": [reason]})
    with models.database.connection_context():
        assert models.Webhook.select().count() == 0


def test_private_targets_are_allowed_when_the_operator_says_so(make_app, admins):
    client = make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS="1").test_client()
    assert make(client, admins["jwt"], url="http://127.0.0.1:8080/hook").status_code == 201


@pytest.mark.parametrize("sessions", [[OTHER_SESSION_ID], ["01J9ZX8K2QHV0M3T6R7P4N5W8E"], [SESSION_ID, OTHER_SESSION_ID]])
def test_sessions_must_be_the_orgs_own_without_saying_whose_they_are(client, admins, sessions):
    response = make(client, admins["jwt"], sessions=sessions)
    assert response.status_code == 422
    assert response.get_json() == error_body("validation_error", "invalid sessions", UNKNOWN_SESSIONS)


@pytest.mark.parametrize("body, details", [
    ({}, {"url": ["Missing data for required field."]}),
    ({"url": 5}, {"url": ["Not a valid string."]}),
    ({"url": HOOK, "sessions": []}, {"sessions": ["must name 1 to 1000 sessions, or be null for every session"]}),
    ({"url": HOOK, "sessions": [SESSION_ID, SESSION_ID]}, {"sessions": ["must not name a session twice"]}),
    ({"url": HOOK, "sessions": SESSION_ID}, {"sessions": ["Not a valid list."]}),
    ({"url": HOOK, "changedBy": "gateway"}, {"changedBy": ["Must be one of: api, sync."]}),
    ({"url": HOOK, "description": "x" * 501}, {"description": ["Longer than maximum length 500."]}),
    ({"url": HOOK, "secret": "whsec_mine"}, {"secret": ["Unknown field."]}),
    ({"url": HOOK, "enabled": False}, {"enabled": ["Unknown field."]}),
])
def test_a_bad_body_is_422_naming_each_field(client, admins, body, details):
    response = client.post(WEBHOOKS_URL, json=body, headers=admins["jwt"])
    assert response.status_code == 422
    assert response.get_json() == error_body("validation_error", "invalid " + ", ".join(sorted(details)), details)


def test_checks_come_in_the_contracts_order(client, admins):
    own = make(client, admins["jwt"]).get_json()["id"]
    theirs = make(client, admins["globex"]).get_json()["id"]
    too_big = b'{"description": "' + b"x" * 70_000 + b'"}'
    paths = [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/rotate-secret"), ("GET", "/deliveries"),
             ("POST", "/replay")]
    for method, tail in paths:
        url = f"{WEBHOOKS_URL}/{theirs}{tail}"
        unauthorized = client.open(url, method=method, data=too_big)
        assert (unauthorized.status_code, unauthorized.get_json()) == (401, error_body(
            "unauthorized", "missing Authorization header; send Authorization: Bearer <token>"))
        for refused in ("member", "no admin key"):
            response = client.open(url, method=method, data=too_big, headers=admins[refused])
            assert response.status_code == 403, (method, tail, refused)
            assert response.get_json() == error_body("forbidden", "this token lacks the 'admin' capability")
        for missing in (theirs, "999999", "abc", "9" * 30, "¹", "١٢"):
            response = client.open(f"{WEBHOOKS_URL}/{missing}{tail}", method=method, data=too_big,
                                   headers=admins["jwt"])
            assert response.status_code == 404, (method, tail, missing)
            assert response.get_json() == error_body("not_found", "webhook not found")
    for method, tail in (("PATCH", ""), ("POST", "/replay")):
        response = client.open(f"{WEBHOOKS_URL}/{own}{tail}", method=method, data=too_big, headers=admins["jwt"])
        assert (response.status_code, response.get_json()) == (413, TOO_LARGE)
    response = client.post(WEBHOOKS_URL, data=too_big, headers=admins["jwt"])
    assert (response.status_code, response.get_json()) == (413, TOO_LARGE)
    assert client.get(f"{WEBHOOKS_URL}/{theirs}", headers=admins["globex"]).status_code == 200


def test_the_list_pages_newest_first_with_a_signed_cursor(client, admins):
    made = [make(client, admins["jwt"], description=f"n{n}").get_json()["id"] for n in range(5)]
    make(client, admins["globex"])
    seen, cursor = [], None
    while True:
        page = client.get(WEBHOOKS_URL, query_string={"limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers=admins["key"]).get_json()
        assert len(page["data"]) <= 2 and all(set(webhook) == WEBHOOK_FIELDS for webhook in page["data"])
        seen += [webhook["id"] for webhook in page["data"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
    second = client.get(WEBHOOKS_URL, query_string={"limit": 2}, headers=admins["jwt"]).get_json()["nextCursor"]
    for cursor in (second, second[:-2], "garbled"):
        response = client.get(WEBHOOKS_URL, query_string={"cursor": cursor}, headers=admins["globex"])
        assert response.status_code == 422
        assert response.get_json() == error_body("validation_error", "invalid cursor", {
            "cursor": ["cursor was not issued by this server for this listing"]})


def test_patch_changes_what_it_was_sent_and_nothing_else(client, admins):
    made = make(client, admins["jwt"], description="CRM").get_json()
    url = f"{WEBHOOKS_URL}/{made['id']}"
    changed = client.patch(url, json={"changedBy": "sync", "sessions": [SESSION_ID]}, headers=admins["jwt"])
    assert changed.status_code == 200
    expected = {name: value for name, value in made.items() if name != "secret"} | {
        "changedBy": "sync", "sessions": [SESSION_ID]}
    assert changed.get_json() == expected
    assert client.get(url, headers=admins["jwt"]).get_json() == expected
    disabled = client.patch(url, json={"enabled": False, "url": "https://93.184.215.15/other"}, headers=admins["jwt"])
    assert disabled.get_json() == expected | {"enabled": False, "url": "https://93.184.215.15/other"}
    for body, message, details in (
            ({"url": None}, "invalid url", {"url": ["Field may not be null."]}),
            ({"url": "http://10.0.0.1/"}, "invalid url", {"url": [REFUSED]}),
            ({"sessions": [OTHER_SESSION_ID]}, "invalid sessions", UNKNOWN_SESSIONS),
            ({"enabled": "yes"}, "invalid enabled", {"enabled": ["must be a JSON boolean: true or false"]}),
            ({"secret": "x"}, "invalid secret", {"secret": ["Unknown field."]}),
            ([], "body must be a JSON object", {"body": ["must be a JSON object"]})):
        response = client.patch(url, json=body, headers=admins["jwt"])
        assert response.status_code == 422, body
        assert response.get_json() == error_body("validation_error", message, details)
    assert client.get(url, headers=admins["jwt"]).get_json() == disabled.get_json()


def test_following_fewer_or_more_sessions_moves_the_streams(client, admins):
    with models.database.connection_context():
        models.Session.create(id="01J9ZX8K2QHV0M3T6R7P4N5W8F", org="acme")
    made = make(client, admins["jwt"], sessions=[SESSION_ID]).get_json()
    assert set(streams_of(made["id"])) == {SESSION_ID}
    client.patch(f"{WEBHOOKS_URL}/{made['id']}", json={"sessions": ["01J9ZX8K2QHV0M3T6R7P4N5W8F"]},
                 headers=admins["jwt"])
    assert set(streams_of(made["id"])) == {"01J9ZX8K2QHV0M3T6R7P4N5W8F"}
    client.patch(f"{WEBHOOKS_URL}/{made['id']}", json={"sessions": None}, headers=admins["jwt"])
    assert set(streams_of(made["id"])) == {SESSION_ID, "01J9ZX8K2QHV0M3T6R7P4N5W8F"}


def test_delete_removes_the_endpoint_and_its_streams(client, admins):
    made = make(client, admins["key"]).get_json()
    url = f"{WEBHOOKS_URL}/{made['id']}"
    deleted = client.delete(url, headers=admins["key"])
    assert (deleted.status_code, deleted.get_data()) == (204, b"")
    assert client.get(url, headers=admins["key"]).get_json() == error_body("not_found", "webhook not found")
    assert client.delete(url, headers=admins["key"]).status_code == 404
    assert streams_of(made["id"]) == {}


def test_rotate_gives_a_new_secret_and_keeps_the_old_one_for_a_day(client, admins):
    made = make(client, admins["jwt"]).get_json()
    rotated = client.post(f"{WEBHOOKS_URL}/{made['id']}/rotate-secret", headers=admins["jwt"])
    assert rotated.status_code == 200
    body = rotated.get_json()
    assert body["secret"].startswith("whsec_") and body["secret"] != made["secret"]
    assert {name: value for name, value in body.items() if name != "secret"} == {
        name: value for name, value in made.items() if name != "secret"}
    stored = stored_webhook(made["id"])
    assert (stored.secret, stored.previous_secret) == (body["secret"], made["secret"])
    assert abs(stored.previous_secret_until - (time.time() + 86400) * 1000) < 60_000


def test_replay_restarts_a_sessions_stream(client, admins, worker_headers):
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"}, {"jid": "2@s.whatsapp.net"})
    made = make(client, admins["jwt"]).get_json()
    url = f"{WEBHOOKS_URL}/{made['id']}/replay"
    accepted = client.post(url, json={"sessionId": SESSION_ID, "since": None}, headers=admins["jwt"])
    assert accepted.status_code == 202
    assert accepted.get_json() == {"sessionId": SESSION_ID, "since": None}
    assert streams_of(made["id"])[SESSION_ID]["position"] == 0
    since = client.get(f"/api/v1/sessions/{SESSION_ID}/changes", query_string={"limit": 1},
                       headers=worker_headers).get_json()["nextSince"]
    assert client.post(url, json={"sessionId": SESSION_ID.lower(), "since": since},
                       headers=admins["jwt"]).status_code == 202
    assert streams_of(made["id"])[SESSION_ID]["position"] == stored("1@s.whatsapp.net")["change_seq"]
    for body, message, details in (
            ({"sessionId": OTHER_SESSION_ID}, "invalid sessionId", {"sessionId": [
                "is not a session of this organization that this webhook follows"]}),
            ({"sessionId": SESSION_ID, "since": "garbage"}, "invalid since", {"since": [
                "since was not issued by this server for this session's changes"]}),
            ({}, "invalid sessionId", {"sessionId": ["Missing data for required field."]})):
        response = client.post(url, json=body, headers=admins["jwt"])
        assert response.status_code == 422, body
        assert response.get_json() == error_body("validation_error", message, details)


def test_secrets_are_sealed_at_rest_when_a_key_is_set(make_app, admins, base_environ):
    secrets_key = Fernet.generate_key().decode()
    client = make_app(WEBHOOK_SECRETS_KEY=secrets_key).test_client()
    made = make(client, admins["jwt"]).get_json()
    stored = stored_webhook(made["id"])
    assert stored.secret.startswith("fernet:") and made["secret"] not in stored.secret
    create_app({**base_environ, "WEBHOOK_SECRETS_KEY": secrets_key})  # starts: the secrets open
    with pytest.raises(ConfigError) as refused:
        create_app({**base_environ, "WEBHOOK_SECRETS_KEY": Fernet.generate_key().decode()})
    assert str(refused.value) == "WEBHOOK_SECRETS_KEY: a webhook secret can't be opened with WEBHOOK_SECRETS_KEY"
    with pytest.raises(ConfigError) as malformed:
        create_app({**base_environ, "WEBHOOK_SECRETS_KEY": "not a key"})
    assert str(malformed.value).startswith("WEBHOOK_SECRETS_KEY: must be a Fernet key")


def test_the_command_line_registers_and_lists_endpoints(runner, orgs):
    made = runner.invoke(args=["create-webhook", "acme", HOOK, "--session", SESSION_ID, "--changed-by", "api"])
    assert made.exit_code == 0, made.output
    webhook_id, secret = made.output.splitlines()
    assert webhook_id.isdigit() and secret.startswith("whsec_")
    listed = runner.invoke(args=["list-webhooks", "acme"])
    assert listed.output == f"{webhook_id}\t{HOOK}\tenabled\t{SESSION_ID}\tapi\t-\n"
    assert secret not in listed.output
    refused = runner.invoke(args=["create-webhook", "acme", "http://10.0.0.1/"])
    assert refused.exit_code == 1 and refused.output == f"Error: url: {REFUSED}\n"
    other = runner.invoke(args=["create-webhook", "acme", HOOK, "--session", OTHER_SESSION_ID])
    assert other.exit_code == 1 and other.output == "Error: sessions: names sessions that are not this organization's\n"
    assert runner.invoke(args=["create-webhook", "nobody", HOOK]).output == "Error: no org 'nobody'\n"
