"""Webhook delivery (contract §13), in-process: the delivery process's loop in a thread, a real receiver on loopback
that checks every signature with the standardwebhooks library. Order, batches, retries under the same webhook-id,
410, re-enabling, filters, isolation, rotation, refused targets, redirects (delivery as operated:
test_delivery_operations.py)."""
import dataclasses
import datetime
import json
import threading
import time

import pytest

import models
from api.inputs import signing_key
from cli import issue_api_key
from conftest import SESSION_ID, add_chats, chat_url, emptied
from push.delivery import Deliverer
from receiver import Receiver

WEBHOOKS_URL = "/api/v1/webhooks"
CHANGES_URL = f"/api/v1/sessions/{SESSION_ID}/changes"
JIDS = [f"{n}@s.whatsapp.net" for n in range(1, 4)]
METRICS_TOKEN = "metrics-token-for-delivery-tests"


@pytest.fixture
def app(make_app):
    return emptied(make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS="1", METRICS_TOKEN=METRICS_TOKEN))


@pytest.fixture
def admin(orgs, identity_provider):
    return {"Authorization": f"Bearer {identity_provider.mint({'org_id': 'acme', 'org_role': 'admin'})}"}


@pytest.fixture
def writer(orgs):
    with models.database.connection_context():
        return {"Authorization": f"Bearer {issue_api_key('acme', 'read,send,sync', 'writer')}"}


@pytest.fixture
def receivers():
    made = []

    def make(answer=None):
        receiver = Receiver(answer=answer)
        made.append(receiver)
        return receiver
    yield make
    for receiver in made:
        receiver.stop()


@pytest.fixture
def deliverers(app):
    """Start delivery loops (threads of this process) with the app's settings and any overrides."""
    started = []
    with app.app_context(), models.database.connection_context():
        key = signing_key()

    def start(**overrides):
        deliverer = Deliverer(dataclasses.replace(app.config["CHATSTORE"], **overrides), key)
        thread = threading.Thread(target=deliverer.run, daemon=True)
        thread.start()
        started.append((deliverer, thread))
        return deliverer
    yield start
    for deliverer, thread in started:
        deliverer.stop()
        thread.join(15)


def register(client, admin, receiver, path="/hook", **body):
    made = client.post(WEBHOOKS_URL, json={"url": receiver.url + path, **body}, headers=admin)
    assert made.status_code == 201, made.get_json()
    receiver.secrets.append(made.get_json()["secret"])
    return made.get_json()


def patch(client, writer, jid, **body):
    response = client.patch(chat_url(SESSION_ID, jid), json=body, headers=writer)
    assert response.status_code == 200
    return response.get_json()


def bodies(deliveries):
    return [json.loads(delivery["body"]) for delivery in deliveries]


def attempts(client, admin, webhook_id, count=1):
    """The endpoint's attempts, once `count` are logged (the receiver answers before the attempt is recorded)."""
    deadline = time.monotonic() + 5
    while True:
        logged = client.get(f"{WEBHOOKS_URL}/{webhook_id}/deliveries", headers=admin).get_json()["data"]
        if len(logged) >= count or time.monotonic() > deadline:
            return logged
        time.sleep(0.02)


@pytest.fixture
def chats(orgs):
    add_chats(SESSION_ID, *({"jid": jid, "name": f"chat {jid}"} for jid in JIDS))


def retry_now(webhook_id):
    """Skip the backoff's wait, as if its time had come."""
    with models.database.connection_context():
        (models.WebhookStream.update(next_attempt_at=0)
         .where(models.WebhookStream.webhook == int(webhook_id)).execute())


def test_a_patch_reaches_the_receiver_signed_as_the_feed_has_it(client, admin, writer, chats, receivers, deliverers):
    receiver = receivers()
    webhook = register(client, admin, receiver)
    deliverers()
    started = time.monotonic()
    chat = patch(client, writer, JIDS[0], archived=True)
    [delivery] = receiver.wait_for(lambda got: got, seconds=5)
    assert time.monotonic() - started < 2
    assert delivery["verified_by"] == [webhook["secret"]] and delivery["path"] == "/hook"
    headers = delivery["headers"]
    assert headers["webhook-id"].startswith("msg_") and headers["content-type"] == "application/json"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 10
    body = json.loads(delivery["body"])
    assert set(body) == {"type", "timestamp", "data"} and body["type"] == "chat.changes"
    assert datetime.datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert body["data"]["changes"] == [{"jid": JIDS[0], "deleted": False, "changedBy": "api", "chat": chat}]
    assert body["data"]["sessionId"] == SESSION_ID and body["data"]["since"] is not None
    # The batch is the feed between its two tokens.
    feed = client.get(CHANGES_URL, query_string={"since": body["data"]["since"]}, headers=writer).get_json()
    assert feed["data"] == body["data"]["changes"] and feed["nextSince"] == body["data"]["nextSince"]
    after = client.get(CHANGES_URL, query_string={"since": body["data"]["nextSince"]}, headers=writer).get_json()
    assert after["data"] == []
    [attempt] = attempts(client, admin, webhook["id"])
    assert attempt == {"webhookId": headers["webhook-id"], "sessionId": SESSION_ID, "attempt": 1, "status": 200,
                       "error": None, "durationMs": attempt["durationMs"], "at": attempt["at"], "nextAttemptAt": None}


def test_a_sync_arrives_in_consecutive_batches_of_the_batch_size(client, admin, writer, orgs, receivers, deliverers):
    receiver = receivers()
    register(client, admin, receiver)
    deliverers(webhook_batch_size=100)
    upserts = [{"jid": f"{n}@s.whatsapp.net", "unreadCount": n} for n in range(250)]
    response = client.post(f"/api/v1/sessions/{SESSION_ID}/sync", json={"upsert": upserts}, headers=writer)
    assert response.status_code == 200
    got = bodies(receiver.wait_for(lambda got: sum(len(json.loads(d["body"])["data"]["changes"]) for d in got) >= 250))
    assert [len(body["data"]["changes"]) for body in got] == [100, 100, 50]
    assert got[0]["data"]["since"] is None  # the session had no change before: from the start
    assert [body["data"]["since"] for body in got[1:]] == [body["data"]["nextSince"] for body in got[:-1]]
    assert [change["jid"] for body in got for change in body["data"]["changes"]] == [row["jid"] for row in upserts]


def test_a_failed_batch_goes_again_the_same_and_later_changes_follow_it(client, admin, writer, chats, receivers,
                                                                        deliverers):
    answers = iter([500])
    receiver = receivers(answer=lambda delivery: next(answers, 200))
    webhook = register(client, admin, receiver)
    deliverers()
    patch(client, writer, JIDS[0], archived=True)
    [failed] = receiver.wait_for(lambda got: got)
    [attempt] = attempts(client, admin, webhook["id"])
    assert (attempt["attempt"], attempt["status"], attempt["error"]) == (1, 500, "answered 500")
    assert 5000 <= attempt["nextAttemptAt"] - attempt["at"] <= 8000  # the first wait: 5 s after the attempt
    patch(client, writer, JIDS[1], pinned=True)  # committed meanwhile: a later batch
    retry_now(webhook["id"])
    got = receiver.wait_for(lambda got: len(got) >= 3)
    assert got[1]["headers"]["webhook-id"] == failed["headers"]["webhook-id"] and got[1]["body"] == failed["body"]
    # Only the attempt's timestamp and so its signature are new: the retry verifies on its own.
    assert got[1]["verified_by"] == [webhook["secret"]]
    assert int(got[1]["headers"]["webhook-timestamp"]) >= int(failed["headers"]["webhook-timestamp"])
    assert [change["jid"] for change in json.loads(got[2]["body"])["data"]["changes"]] == [JIDS[1]]
    assert json.loads(got[2]["body"])["data"]["since"] == json.loads(failed["body"])["data"]["nextSince"]
    logged = attempts(client, admin, webhook["id"], count=3)
    assert [(row["attempt"], row["status"], row["nextAttemptAt"]) for row in logged] == [
        (1, 200, None), (2, 200, None), (1, 500, attempt["nextAttemptAt"])]


def test_410_disables_at_once_and_enabling_resumes_with_nothing_skipped(client, admin, writer, chats, receivers,
                                                                        deliverers):
    gone = threading.Event()
    gone.set()
    receiver = receivers(answer=lambda delivery: 410 if gone.is_set() else 200)
    webhook = register(client, admin, receiver)
    deliverers()
    patch(client, writer, JIDS[0], archived=True)
    [refused] = receiver.wait_for(lambda got: got)
    url = f"{WEBHOOKS_URL}/{webhook['id']}"
    deadline = time.monotonic() + 5
    while client.get(url, headers=admin).get_json()["enabled"] and time.monotonic() < deadline:
        time.sleep(0.05)
    shown = client.get(url, headers=admin).get_json()
    assert (shown["enabled"], shown["disabledReason"]) == (False, "the endpoint answered 410 Gone")
    assert attempts(client, admin, webhook["id"])[0]["nextAttemptAt"] is None
    patch(client, writer, JIDS[1], pinned=True)
    time.sleep(1)
    assert len(receiver.deliveries) == 1  # nothing sent while disabled
    gone.clear()
    enabled = client.patch(url, json={"enabled": True}, headers=admin).get_json()
    assert (enabled["enabled"], enabled["disabledReason"]) == (True, None)
    got = receiver.wait_for(lambda got: len(got) >= 3)
    assert got[1]["headers"]["webhook-id"] == refused["headers"]["webhook-id"] and got[1]["body"] == refused["body"]
    assert [change["jid"] for change in json.loads(got[2]["body"])["data"]["changes"]] == [JIDS[1]]


def test_retries_stop_after_the_retry_hours_and_disable_the_endpoint(client, admin, writer, chats, receivers,
                                                                     deliverers):
    receiver = receivers(answer=lambda delivery: 503)
    webhook = register(client, admin, receiver)
    deliverers(webhook_retry_hours=0.0001)  # 0.36 s
    patch(client, writer, JIDS[0], archived=True)
    receiver.wait_for(lambda got: got)
    time.sleep(0.5)
    retry_now(webhook["id"])
    receiver.wait_for(lambda got: len(got) >= 2)
    deadline = time.monotonic() + 5
    while client.get(f"{WEBHOOKS_URL}/{webhook['id']}", headers=admin).get_json()["enabled"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    shown = client.get(f"{WEBHOOKS_URL}/{webhook['id']}", headers=admin).get_json()
    assert shown["disabledReason"] == "no delivery succeeded for 0.0001 hours; the last attempt: answered 503"


def test_redirects_are_never_followed(client, admin, writer, chats, receivers, deliverers):
    receiver = receivers(answer=lambda delivery: 302 if delivery["path"] == "/hook" else 200)
    webhook = register(client, admin, receiver)
    deliverers()
    patch(client, writer, JIDS[0], archived=True)
    receiver.wait_for(lambda got: got)
    time.sleep(0.5)
    assert [delivery["path"] for delivery in receiver.deliveries] == ["/hook"]
    [attempt] = attempts(client, admin, webhook["id"])
    assert (attempt["status"], attempt["error"]) == (302, "answered 302: redirects are not followed")


def test_a_private_address_is_refused_again_when_delivering(client, admin, writer, chats, receivers, deliverers):
    receiver = receivers()
    webhook = register(client, admin, receiver)  # registered while private targets were allowed
    deliverers(webhook_allow_private_targets=False)
    patch(client, writer, JIDS[0], archived=True)
    [attempt] = attempts(client, admin, webhook["id"])
    assert (attempt["status"], attempt["error"]) == (None, (
        "the target must not resolve to a loopback, private, link-local, shared (CGNAT), multicast, reserved or "
        "unspecified address"))
    assert receiver.deliveries == []


def test_a_failing_endpoint_holds_up_no_other(client, admin, writer, chats, receivers, deliverers):
    failing, healthy = receivers(answer=lambda delivery: 500), receivers()
    register(client, admin, failing)
    register(client, admin, healthy)
    deliverers()
    for jid in JIDS:
        patch(client, writer, jid, archived=True)
    got = healthy.wait_for(lambda got: sum(len(json.loads(d["body"])["data"]["changes"]) for d in got) >= 3)
    assert [change["jid"] for body in bodies(got) for change in body["data"]["changes"]] == JIDS
    failing.wait_for(lambda got: got)
    time.sleep(0.5)
    assert len(failing.deliveries) == 1  # waiting out its backoff


def test_an_endpoint_gets_only_the_sessions_and_kind_it_asks_for(client, admin, writer, chats, receivers, deliverers,
                                                                 identity_provider):
    other_session = "01J9ZX8K2QHV0M3T6R7P4N5W8F"
    with models.database.connection_context():
        models.Session.create(id=other_session, org="acme")
    by_api, main_only, theirs = receivers(), receivers(), receivers()
    register(client, admin, by_api, changedBy="api")
    register(client, admin, main_only, sessions=[SESSION_ID])
    globex = {"Authorization": f"Bearer {identity_provider.mint({'org_id': 'globex', 'org_role': 'owner'})}"}
    register(client, globex, theirs)
    deliverers()
    client.post(f"/api/v1/sessions/{SESSION_ID}/sync", json={"upsert": [{"jid": "9@s.whatsapp.net"}]}, headers=writer)
    client.post(f"/api/v1/sessions/{other_session}/sync", json={"upsert": [{"jid": "8@s.whatsapp.net"}]},
                headers=writer)
    patch(client, writer, JIDS[0], archived=True)
    api_got = by_api.wait_for(lambda got: got)
    main_got = main_only.wait_for(lambda got: sum(len(json.loads(d["body"])["data"]["changes"]) for d in got) >= 2)
    time.sleep(1)
    assert [(body["data"]["sessionId"], change["jid"]) for body in bodies(by_api.deliveries)
            for change in body["data"]["changes"]] == [(SESSION_ID, JIDS[0])]
    assert {body["data"]["sessionId"] for body in bodies(main_only.deliveries)} == {SESSION_ID}
    assert theirs.deliveries == [] and api_got and main_got


def test_after_a_rotation_both_secrets_sign_for_a_day(client, admin, writer, chats, receivers, deliverers):
    receiver = receivers()
    webhook = register(client, admin, receiver)
    rotated = client.post(f"{WEBHOOKS_URL}/{webhook['id']}/rotate-secret", headers=admin).get_json()
    receiver.secrets.append(rotated["secret"])
    deliverers()
    patch(client, writer, JIDS[0], archived=True)
    [delivery] = receiver.wait_for(lambda got: got)
    assert delivery["verified_by"] == [webhook["secret"], rotated["secret"]]
    assert len(delivery["headers"]["webhook-signature"].split(" ")) == 2
