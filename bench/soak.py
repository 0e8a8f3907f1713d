"""make soak: gunicorn with 4 workers, 32 concurrent clients mixing GET, list and PATCH, on each backend.

Each client owns one chat and is its only writer, so at the end the stored chat must equal, field by field,
the last PATCH answer that client got a 200 for. Prints the request and error counts; exits 1 on any 5xx,
connection error or mismatch.

    python bench/soak.py [--backends sqlite,postgresql] [--seconds 60] [--clients 32]
"""
import argparse
import os
import random
import subprocess
import sys
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]

from run import Served, flask_command  # noqa: E402  (bench/run.py: the same gunicorn and flask helpers)

SESSION_ID = "01JS0AK0000000000000000001"
URLS = {"sqlite": "sqlite:///" + os.path.join(ROOT, "bench", "soak.db"),
        "postgresql": "postgresql://postgres@127.0.0.1:5432/chatstore_soak"}


def fresh_database(backend, env):
    if backend == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(URLS["sqlite"][len("sqlite:///"):] + suffix):
                os.remove(URLS["sqlite"][len("sqlite:///"):] + suffix)
    else:
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", "chatstore_soak"], check=True)
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", "chatstore_soak"], check=True)
    flask_command(env, "init-db")
    flask_command(env, "create-org", "Soak", "--id", "soak")
    flask_command(env, "create-session", "soak", "--id", SESSION_ID)
    lines = [f'{{"jid": "{n}@s.whatsapp.net", "lastMessageAt": {1_700_000_000_000 + n}}}\n' for n in range(200)]
    flask_command(env, "import-chats", SESSION_ID, "-", stdin_lines=lines)
    return flask_command(env, "create-api-key", "soak", "--capabilities", "read,send")


class Client(threading.Thread):
    """Owns chat n: reads it, lists the session, and patches its own chat with random changes."""

    def __init__(self, n, base, key, deadline):
        super().__init__()
        self.jid, self.base, self.deadline = f"{n}@s.whatsapp.net", base, deadline
        self.headers = {"Authorization": f"Bearer {key}"}
        self.rng = random.Random(n)
        self.requests, self.errors, self.last_acknowledged = 0, [], None

    def run(self):
        chat_url = f"{self.base}/api/v1/sessions/{SESSION_ID}/chats/{self.jid}"
        with requests.Session() as http:
            while time.monotonic() < self.deadline:
                kind = self.rng.choice(["get", "list", "patch", "patch"])
                try:
                    if kind == "get":
                        response = http.get(chat_url, headers=self.headers, timeout=30)
                    elif kind == "list":
                        response = http.get(f"{self.base}/api/v1/sessions/{SESSION_ID}/chats?limit=20",
                                            headers=self.headers, timeout=30)
                    else:
                        response = http.patch(chat_url, json=self.random_change(), headers=self.headers, timeout=30)
                except requests.RequestException as error:
                    self.errors.append(f"{kind}: {type(error).__name__}")
                    continue
                self.requests += 1
                if response.status_code >= 500:
                    self.errors.append(f"{kind}: {response.status_code} {response.text[:200]}")
                elif kind == "patch" and response.status_code == 200:
                    self.last_acknowledged = response.json()

    def random_change(self):
        change = {}
        for name in self.rng.sample(["archived", "pinned", "mutedUntil", "unmute"], self.rng.randint(1, 3)):
            if name == "mutedUntil":
                change[name] = self.rng.choice([-1, int(time.time() * 1000) + self.rng.randint(60_000, 10 ** 9)])
            else:
                change[name] = self.rng.random() < 0.5
        if change.get("archived") and change.get("pinned"):
            del change["pinned"]  # a body WhatsApp refuses; the soak is about accepted writes
        return change


def soak(backend, seconds, clients):
    env = {**os.environ, "DATABASE_URL": URLS[backend], "LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": "4"}
    key = fresh_database(backend, env)
    served = Served("app:app", env)
    try:
        deadline = time.monotonic() + seconds
        threads = [Client(n, served.base, key, deadline) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        mismatches = []
        for thread in threads:
            if thread.last_acknowledged is None:
                continue
            stored = requests.get(f"{served.base}/api/v1/sessions/{SESSION_ID}/chats/{thread.jid}",
                                  headers=thread.headers, timeout=30).json()
            if stored != thread.last_acknowledged:
                mismatches.append((thread.jid, thread.last_acknowledged, stored))
    finally:
        served.stop()
    total = sum(thread.requests for thread in threads)
    errors = [error for thread in threads for error in thread.errors]
    print(f"{backend}: {total:,} requests in {seconds} s ({total / seconds:,.0f}/s) by {clients} clients; "
          f"errors (5xx or connection): {len(errors)}; chats whose stored state differs from the last "
          f"acknowledged write: {len(mismatches)}")
    for error in errors[:5]:
        print("  error:", error)
    for mismatch in mismatches[:5]:
        print("  mismatch:", mismatch)
    return not errors and not mismatches


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    results = [soak(backend, args.seconds, args.clients) for backend in args.backends.split(",")]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
