"""Webhook delivery as the Procfile runs it: gunicorn's workers take the writes, `flask --app app deliver-webhooks`
processes deliver. The proof (contract §13): with several writers, delivery processes killed with SIGKILL and
restarted, and a receiver that fails at random, what the receiver accepted equals the stored chats exactly, and
per session its batches follow one another without a gap, never going back. And TERM: out within 10 s, nothing
lost."""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import requests

import models
from api.cursors import decode_since
from cli import issue_api_key
from conftest import SESSION_ID, add_chats, app_environ, chat_url
from receiver import Receiver
from schemas import dump_chat
from serving import ROOT, Gunicorn
from store.watch import latest_positions

FLASK = os.path.join(os.path.dirname(sys.executable), "flask")
ON_POSTGRESQL = os.environ.get("TEST_DATABASE_URL", "").startswith("postgres")
SESSIONS = [SESSION_ID, "01J9ZX8K2QHV0M3T6R7P4N5W8F", "01J9ZX8K2QHV0M3T6R7P4N5W8G"]
JIDS = [f"{n}@s.whatsapp.net" for n in range(40)]


class DeliveryProcess:
    def __init__(self, environ, log_path):
        self.log_path = log_path
        self.log = open(log_path, "a")
        self.process = subprocess.Popen([FLASK, "--app", "app", "deliver-webhooks"], cwd=ROOT,
                                        env={**os.environ, **environ}, stdout=self.log, stderr=subprocess.STDOUT)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self):
        """TERM; how long it took to exit, and its exit status."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=30)
        return time.monotonic() - started, status


def delivery_environ(database_url, identity_provider, **extra):
    return {**app_environ(database_url, identity_provider), "WEBHOOK_ALLOW_PRIVATE_TARGETS": "1", **extra}


class ProvingReceiver:
    """Applies each batch it accepts (a valid signature, a webhook-id not seen before) to its own copy of each
    session's chats, and keeps the order of the batches' positions; fails a share of deliveries at random."""

    def __init__(self, failure_rate):
        self.copies = {session_id: {} for session_id in SESSIONS}
        self.chain = {session_id: [] for session_id in SESSIONS}  # (since, nextSince) of accepted batches
        self.seen, self.lock, self.random = set(), threading.Lock(), random.Random(7)
        self.failure_rate = failure_rate
        self.receiver = Receiver(answer=self.answer)

    def answer(self, delivery):
        if not delivery["verified_by"]:
            return 400
        with self.lock:
            if self.random.random() < self.failure_rate:
                return 500
            message_id = delivery["headers"]["webhook-id"]
            if message_id in self.seen:
                return 200  # a duplicate: already applied
            self.seen.add(message_id)
            body = json.loads(delivery["body"])
            data = body["data"]
            assert body["type"] == "chat.changes", body
            for change in data["changes"]:
                if change["deleted"]:
                    self.copies[data["sessionId"]].pop(change["jid"], None)
                else:
                    self.copies[data["sessionId"]][change["jid"]] = change["chat"]
            self.chain[data["sessionId"]].append((data["since"], data["nextSince"]))
        return 200


def write_at_random(base, headers, seed, rounds):
    """PATCHes and syncs (upserts and deletes) through the served app, as a gateway and its users would."""
    chooser = random.Random(seed)
    with requests.Session() as http:
        for _ in range(rounds):
            session_id, jid = chooser.choice(SESSIONS), chooser.choice(JIDS)
            kind = chooser.random()
            if kind < 0.5:
                body = chooser.choice([{"archived": True}, {"archived": False}, {"unmute": True},
                                       {"mutedUntil": -1}, {"pinned": False}])
                response = http.patch(base + chat_url(session_id, jid), json=body, headers=headers, timeout=10)
                assert response.status_code in (200, 404), response.text
            elif kind < 0.85:
                rows = [{"jid": chooser.choice(JIDS), "unreadCount": chooser.randrange(100),
                         "name": f"n{chooser.randrange(1000)}"} for _ in range(chooser.randrange(1, 6))]
                response = http.post(f"{base}/api/v1/sessions/{session_id}/sync", json={"upsert": rows},
                                     headers=headers, timeout=10)
                assert response.status_code == 200, response.text
            else:
                response = http.post(f"{base}/api/v1/sessions/{session_id}/sync", json={"delete": [jid]},
                                     headers=headers, timeout=10)
                assert response.status_code == 200, response.text


def caught_up(webhook_id):
    with models.database.connection_context():
        streams = list(models.WebhookStream.select().where(models.WebhookStream.webhook == webhook_id).dicts())
        latest = latest_positions(SESSIONS)
    return len(streams) == len(SESSIONS) and all(
        stream["message_id"] is None and stream["position"] >= latest[stream["session"]] for stream in streams)


def stored_chats(session_id):
    with models.database.connection_context():
        return {row["jid"]: dump_chat(row) for row in models.Chat.select().where(models.Chat.session == session_id).dicts()}


def test_proof_the_receiver_ends_with_exactly_the_stored_chats(app, database_url, identity_provider, orgs, tmp_path):
    with models.database.connection_context():
        for session_id in SESSIONS[1:]:
            models.Session.create(id=session_id, org="acme")
        writer = {"Authorization": f"Bearer {issue_api_key('acme', 'read,send,sync,admin', 'proof')}"}
    for session_id in SESSIONS:
        add_chats(session_id, *({"jid": jid} for jid in JIDS))
    environ = delivery_environ(database_url, identity_provider, WEBHOOK_BATCH_SIZE="5", WEBHOOK_TIMEOUT_SECONDS="2")
    served = Gunicorn(environ, tmp_path / "gunicorn.log", workers=4)
    proving = ProvingReceiver(failure_rate=0.1)
    made = requests.post(served.base + "/api/v1/webhooks", json={"url": proving.receiver.url + "/proof"},
                         headers=writer, timeout=10)
    assert made.status_code == 201
    webhook_id, secret = int(made.json()["id"]), made.json()["secret"]
    proving.receiver.secrets.append(secret)
    with models.database.connection_context():
        start = {row["session"]: row["position"] for row in models.WebhookStream.select().dicts()}
    count = 2 if ON_POSTGRESQL else 1  # SQLite: one delivery process
    processes = [DeliveryProcess(environ, tmp_path / f"deliver-{n}.log") for n in range(count)]
    writers = [threading.Thread(target=write_at_random, args=(served.base, writer, seed, 150)) for seed in range(4)]
    try:
        for thread in writers:
            thread.start()
        time.sleep(2)
        processes[0].kill()  # mid-delivery: its leases run out, another (or its restart) takes them
        processes[0] = DeliveryProcess(environ, tmp_path / "deliver-0.log")
        time.sleep(2)
        processes[-1].kill()
        processes[-1] = DeliveryProcess(environ, tmp_path / f"deliver-{count - 1}.log")
        for thread in writers:
            thread.join(120)
        deadline = time.monotonic() + 150
        while not caught_up(webhook_id):
            assert time.monotonic() < deadline, "delivery did not catch up"
            time.sleep(0.5)
    finally:
        for process in processes:
            process.terminate()
        log = served.stop()
        proving.receiver.stop()
    assert "Traceback" not in log
    with app.app_context(), models.database.connection_context():
        from api.inputs import signing_key
        key = signing_key()
    for session_id in SESSIONS:
        assert proving.copies[session_id] == stored_chats(session_id), session_id
        chain = proving.chain[session_id]
        assert chain, session_id
        positions = [decode_since(key, session_id, since) if since else 0 for since, _ in chain]
        ends = [decode_since(key, session_id, next_since) for _, next_since in chain]
        assert positions[0] == start[session_id]
        assert positions[1:] == ends[:-1], "a gap or a batch out of order"
        assert all(begin < end for begin, end in zip(positions, ends)), "positions went back"
    failures = sum(1 for delivery in proving.receiver.deliveries if delivery["status"] == 500)
    assert failures > 0  # the receiver did fail, and nothing was lost for it


def test_term_exits_within_10_seconds_and_the_abandoned_attempt_goes_again(app, database_url, identity_provider,
                                                                           orgs, tmp_path):
    add_chats(SESSION_ID, {"jid": JIDS[0]})
    hanging = threading.Event()
    receiver = Receiver(answer=lambda delivery: (hanging.wait(30), 200)[1] if not hanging.is_set() else 200)
    environ = delivery_environ(database_url, identity_provider)  # WEBHOOK_TIMEOUT_SECONDS: 10, the default
    processes = []
    try:
        made = app.test_client().post(
            "/api/v1/webhooks", json={"url": receiver.url + "/slow"},
            headers={"Authorization": f"Bearer {identity_provider.mint({'org_id': 'acme', 'org_role': 'admin'})}"})
        # Registered by an app without WEBHOOK_ALLOW_PRIVATE_TARGETS: refused; register it as the CLI would.
        assert (made.status_code, made.get_json()) == (422, {"error": {
            "code": "validation_error", "message": "invalid url", "details": {"url": [
                "the URL must not resolve to a loopback, private, link-local, shared (CGNAT), multicast, reserved or "
                "unspecified address"]}}})
        created = subprocess.run([FLASK, "--app", "app", "create-webhook", "acme", receiver.url + "/slow"], cwd=ROOT,
                                 env={**os.environ, **environ}, capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stderr
        receiver.secrets.append(created.stdout.splitlines()[1])
        add_chats(SESSION_ID, {"jid": JIDS[1]})
        processes.append(DeliveryProcess(environ, tmp_path / "deliver.log"))
        [first] = receiver.wait_for(lambda got: got, seconds=15)  # held by the receiver
        took, status = processes[-1].terminate()
        assert took < 10 and status == 0
        hanging.set()
        processes.append(DeliveryProcess(environ, tmp_path / "deliver.log"))
        got = receiver.wait_for(lambda got: len(got) >= 2, seconds=15)
        assert got[1]["headers"]["webhook-id"] == first["headers"]["webhook-id"] and got[1]["body"] == first["body"]
        assert got[1]["verified_by"]
    finally:
        for process in processes:
            if process.process.poll() is None:
                process.terminate()
        receiver.stop()
