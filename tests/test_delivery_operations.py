"""Webhook delivery (contract §13) as it is operated, in-process like test_delivery.py: a resume point older than
the purged tombstones, the log line and the metrics, two delivery processes, a host of several addresses, an
endpoint deleted mid-attempt, the age of what waits while no delivery process runs."""
import datetime
import json
import threading
import time

import models
from conftest import SESSION_ID
# The fixtures (admin, app, chats, deliverers, receivers, writer) are test_delivery.py's.
from test_delivery import (JIDS, METRICS_TOKEN, WEBHOOKS_URL, admin, app, bodies, chats, deliverers,  # noqa: F401
                           patch, receivers, register, writer)


def test_a_resume_point_older_than_purged_tombstones_asks_for_a_resync(client, admin, writer, chats, receivers,
                                                                       deliverers, runner):
    receiver = receivers()
    webhook = register(client, admin, receiver)
    url = f"{WEBHOOKS_URL}/{webhook['id']}"
    client.patch(url, json={"enabled": False}, headers=admin)
    client.post(f"/api/v1/sessions/{SESSION_ID}/sync", json={"delete": [JIDS[0]]}, headers=writer)
    with models.database.connection_context():
        models.ChatTombstone.update(deleted_at=models.now_utc() - datetime.timedelta(days=31)).execute()
    assert runner.invoke(args=["purge-tombstones"]).stdout == "1\n"
    client.patch(url, json={"enabled": True}, headers=admin)
    deliverers()
    [resync] = receiver.wait_for(lambda got: got)
    body = json.loads(resync["body"])
    assert set(body) == {"type", "timestamp", "data"}
    assert (body["type"], body["data"]) == ("chat.resync_required", {"sessionId": SESSION_ID})
    patch(client, writer, JIDS[1], pinned=True)
    got = receiver.wait_for(lambda got: len(got) >= 2)
    assert [change["jid"] for change in json.loads(got[1]["body"])["data"]["changes"]] == [JIDS[1]]


def test_each_attempt_is_logged_and_counted_without_secret_or_body(client, admin, writer, chats, receivers,
                                                                   deliverers, caplog):
    failing, healthy = receivers(answer=lambda delivery: 500), receivers()
    failing_hook, healthy_hook = register(client, admin, failing), register(client, admin, healthy)
    deliverers()
    with caplog.at_level("INFO", logger="chatstore.webhooks"):
        client.post(f"/api/v1/sessions/{SESSION_ID}/sync", json={"upsert": [{"jid": JIDS[0], "name": "a secret name"}]},
                    headers=writer)
        healthy.wait_for(lambda got: got)
        failing.wait_for(lambda got: got)
        time.sleep(0.3)
    lines = [record.getMessage() for record in caplog.records if "webhook attempt" in record.getMessage()]
    assert len(lines) == 2
    message_ids = {failing.deliveries[0]["headers"]["webhook-id"], healthy.deliveries[0]["headers"]["webhook-id"]}
    assert {line.split("webhook-id=")[1].split()[0] for line in lines} == message_ids
    text = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (failing_hook["secret"], healthy_hook["secret"]):
        assert secret not in text and secret[6:] not in text
    assert "a secret name" not in text and "/hook" not in text
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).get_data(as_text=True)
    assert 'chatstore_webhook_attempts_total{outcome="delivered"} 1.0' in metrics
    assert 'chatstore_webhook_attempts_total{outcome="http_error"} 1.0' in metrics
    assert f'chatstore_webhook_oldest_undelivered_seconds{{webhook="{healthy_hook["id"]}"}} 0.0' in metrics
    [failing_age] = [line for line in metrics.splitlines()
                     if line.startswith(f'chatstore_webhook_oldest_undelivered_seconds{{webhook="{failing_hook["id"]}"}}')]
    assert float(failing_age.split()[-1]) > 0
    assert failing_hook["secret"] not in metrics and "/hook" not in metrics


def test_two_delivery_processes_never_send_one_streams_batches_at_once(client, admin, writer, chats, receivers,
                                                                       deliverers):
    in_flight, overlaps, lock = set(), [], threading.Lock()

    def slow(delivery):
        session = json.loads(delivery["body"])["data"]["sessionId"]
        with lock:
            if session in in_flight:
                overlaps.append(delivery["headers"]["webhook-id"])
            in_flight.add(session)
        time.sleep(0.05)
        with lock:
            in_flight.discard(session)
        return 200
    receiver = receivers(answer=slow)
    register(client, admin, receiver)
    deliverers(webhook_batch_size=2)
    deliverers(webhook_batch_size=2)
    for round_number in range(10):
        for jid in JIDS:
            client.post(f"/api/v1/sessions/{SESSION_ID}/sync",
                        json={"upsert": [{"jid": jid, "unreadCount": round_number}]}, headers=writer)
    receiver.wait_for(lambda got: any('"unreadCount":9' in d["body"].decode() and JIDS[2] in d["body"].decode()
                                      for d in got), seconds=30)
    got = bodies(receiver.deliveries)
    assert overlaps == []
    assert [body["data"]["since"] for body in got[1:]] == [body["data"]["nextSince"] for body in got[:-1]]
    final = {}
    for body in got:
        for change in body["data"]["changes"]:
            final[change["jid"]] = change["chat"]["unreadCount"]
    assert final == {jid: 9 for jid in JIDS}


def test_a_host_name_is_tried_at_each_of_its_addresses_in_turn(client, admin, writer, chats, receivers, deliverers):
    """`localhost` resolves to ::1 before 127.0.0.1 on many hosts; a receiver listening on 127.0.0.1 alone is
    reached at the address that answers, as a connect would."""
    receiver = receivers()
    port = receiver.url.rsplit(":", 1)[1]
    made = client.post(WEBHOOKS_URL, json={"url": f"http://localhost:{port}/hook"}, headers=admin)
    assert made.status_code == 201
    receiver.secrets.append(made.get_json()["secret"])
    deliverers()
    patch(client, writer, JIDS[0], archived=True)
    [delivery] = receiver.wait_for(lambda got: got)
    assert delivery["verified_by"] and delivery["headers"]["host"] == f"localhost:{port}"


def test_an_endpoint_deleted_during_its_attempt_leaves_nothing_behind(client, admin, writer, chats, receivers,
                                                                      deliverers, caplog):
    deleted = threading.Event()

    def delete_while_answering(delivery):
        client.delete(f"{WEBHOOKS_URL}/{webhook['id']}", headers=admin)
        deleted.set()
        return 200
    receiver = receivers(answer=delete_while_answering)
    webhook = register(client, admin, receiver)
    deliverers()
    with caplog.at_level("INFO", logger="chatstore.webhooks"):
        patch(client, writer, JIDS[0], archived=True)
        assert deleted.wait(5)
        time.sleep(0.5)
    with models.database.connection_context():
        assert models.WebhookDelivery.select().count() == 0 and models.WebhookStream.select().count() == 0
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


def test_the_oldest_undelivered_age_grows_while_no_delivery_process_runs(client, admin, writer, chats, receivers):
    webhook = register(client, admin, receivers())
    patch(client, writer, JIDS[0], archived=True)

    def age():
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).get_data(as_text=True)
        [line] = [line for line in metrics.splitlines()
                  if line.startswith(f'chatstore_webhook_oldest_undelivered_seconds{{webhook="{webhook["id"]}"}}')]
        return float(line.split()[-1])
    first = age()
    time.sleep(1.1)
    assert first < 1 and age() >= 1
