"""make bench-webhooks: webhook delivery as the Procfile runs it (gunicorn, one deliver-webhooks process), to a
receiver on loopback that checks every signature with the standardwebhooks library.

1. Latency: PATCHes one at a time (each a different chat, 20 to 300 ms apart at random, so they fall anywhere in
   the delivery process's polling cycle) with a healthy receiver: from sending the PATCH to the receiver holding
   the change, p50 and p99.
2. Throughput: a sync of 100,000 chats (100 POSTs of 1,000) into a new session: delivered changes per second,
   from the sync's first commit to the receiver holding the last change, at the default batch size.
3. Cost to the web side: wrk PATCHing for --seconds with the delivery process running, and with it stopped, in
   turn for ROUNDS rounds: the median of the rounds' ratios.

    python bench/webhooks.py [--backends sqlite,postgresql] [--seconds 10]
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench"), os.path.join(ROOT, "tests")]

from hostile import percentile, scratch_database  # noqa: E402
from receiver import Receiver  # noqa: E402
from run import BIN, Served, drive, flask_command  # noqa: E402

SESSION_ID, SYNC_SESSION_ID = "01JWEBH00K000000000000000A", "01JWEBH00K000000000000000B"
CHATS, PATCHES, SYNCED, SYNC_BATCH = 1000, 200, 100_000, 1000
ROUNDS = 3


class CountingReceiver:
    """When each chat's change arrived (by jid), and how many changes arrived in all."""

    def __init__(self):
        self.arrived, self.count, self.lock = {}, 0, threading.Lock()
        self.receiver = Receiver(answer=self.answer)

    def answer(self, delivery):
        if not delivery["verified_by"]:
            return 400
        now = time.monotonic()
        changes = json.loads(delivery["body"])["data"].get("changes", [])
        with self.lock:
            self.count += len(changes)
            for change in changes:
                self.arrived.setdefault(change["jid"], now)
        return 200

    def wait_for_count(self, count, seconds):
        deadline = time.monotonic() + seconds
        while self.count < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.count >= count


def delivery_process(env):
    return subprocess.Popen([os.path.join(BIN, "flask"), "--app", "app", "deliver-webhooks"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process):
    process.terminate()
    process.wait(timeout=30)


def seed(env, receiver):
    flask_command(env, "init-db")
    flask_command(env, "create-org", "hooks", "--id", "hooks")
    for session_id in (SESSION_ID, SYNC_SESSION_ID):
        flask_command(env, "create-session", "hooks", "--id", session_id)
    lines = [json.dumps({"jid": f"{n}@s.whatsapp.net", "name": f"Chat {n}"}) + "\n" for n in range(CHATS)]
    flask_command(env, "import-chats", SESSION_ID, "-", stdin_lines=lines)
    _, secret = flask_command(env, "create-webhook", "hooks", receiver.receiver.url + "/bench").splitlines()
    receiver.receiver.secrets.append(secret)
    return flask_command(env, "create-api-key", "hooks", "--capabilities", "read,send,sync")


def latency_run(base, headers, receiver):
    latencies = []
    with requests.Session() as http:
        for n in range(PATCHES):
            jid = f"{n}@s.whatsapp.net"
            sent = time.monotonic()
            http.patch(f"{base}/api/v1/sessions/{SESSION_ID}/chats/{jid}", json={"archived": True}, headers=headers,
                       timeout=10).raise_for_status()
            deadline = sent + 10
            while jid not in receiver.arrived and time.monotonic() < deadline:
                time.sleep(0.0005)
            latencies.append((receiver.arrived.get(jid, float("inf")) - sent) * 1000)
            time.sleep(random.uniform(0.02, 0.3))
    return latencies


def throughput_run(base, headers, receiver):
    before = receiver.count
    started = time.monotonic()
    with requests.Session() as http:
        for start in range(0, SYNCED, SYNC_BATCH):
            rows = [{"jid": f"{n}@s.whatsapp.net", "unreadCount": 1} for n in range(start, start + SYNC_BATCH)]
            http.post(f"{base}/api/v1/sessions/{SYNC_SESSION_ID}/sync", json={"upsert": rows}, headers=headers,
                      timeout=60).raise_for_status()
    synced = time.monotonic() - started
    complete = receiver.wait_for_count(before + SYNCED, 600)
    return synced, time.monotonic() - started, complete


def cost_rounds(env, base, key, seconds):
    ratios = []
    for _ in range(ROUNDS):
        worker = delivery_process(env)
        time.sleep(1)
        with_delivery = drive(f"{base}/api/v1/sessions/{SESSION_ID}/chats/1@s.whatsapp.net", key, seconds, 8,
                              "patch.lua")[0]
        stop(worker)
        without = drive(f"{base}/api/v1/sessions/{SESSION_ID}/chats/1@s.whatsapp.net", key, seconds, 8,
                        "patch.lua")[0]
        ratios.append((with_delivery, without))
    return ratios


def bench_backend(backend, seconds):
    url = scratch_database(backend, "webhooks")
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": "2",
           "SECRET_KEY": "webhook-bench", "WEBHOOK_ALLOW_PRIVATE_TARGETS": "1"}
    receiver = CountingReceiver()
    key = seed(env, receiver)
    headers = {"Authorization": f"Bearer {key}"}
    served = Served("app:app", env)
    worker = delivery_process(env)
    print(f"\n### {backend}\n")
    try:
        time.sleep(1)
        latencies = latency_run(served.base, headers, receiver)
        print(f"PATCH to receiver, {PATCHES} PATCHes one at a time: p50 {statistics.median(latencies):.0f} ms, "
              f"p99 {percentile(latencies, 0.99):.0f} ms, max {max(latencies):.0f} ms")
        synced, delivered, complete = throughput_run(served.base, headers, receiver)
        print(f"sync of {SYNCED:,} chats ({SYNCED // SYNC_BATCH} POSTs, {synced:.1f} s): all delivered "
              f"{delivered:.1f} s after the first POST, {SYNCED / delivered:,.0f} changes/s"
              + ("" if complete else " (INCOMPLETE after 600 s)"))
        stop(worker)
        rounds = cost_rounds(env, served.base, key, seconds)
        ratio = statistics.median(with_delivery / without for with_delivery, without in rounds)
        print(f"PATCH throughput (wrk, 8 connections, {seconds} s), with the delivery process running / stopped: "
              + ", ".join(f"{a:,.0f} / {b:,.0f}" for a, b in rounds) + f" req/s; median ratio {ratio:.3f} "
              f"(cost {(1 - ratio) * 100:.1f} %)")
    finally:
        if worker.poll() is None:
            stop(worker)
        served.stop()
        receiver.receiver.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seconds", type=int, default=10)
    arguments = parser.parse_args()
    print(f"## make bench-webhooks ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)")
    for backend in arguments.backends.split(","):
        bench_backend(backend, arguments.seconds)


if __name__ == "__main__":
    main()
