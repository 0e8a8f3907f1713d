"""make hostile: Chatstore served as the Procfile serves it, under slow clients and a mixed keep-alive load.

1. Slow clients: 500 connections that send nothing and 500 that trickle a request a byte every 50 ms stay
   open while 50 normal GETs (each on a new connection) are timed: p50, p99, max, failures. The same is tried
   with gunicorn's default sync workers, for comparison (a few GETs, 3 s timeout each).
2. Long-polls: 1,000 connections each waiting on the changes feed (`wait=30`, nothing coming) while 50 normal
   GETs are timed, then one PATCH: how many of the waiting polls answered with it, and how soon.
3. Mixed load: wrk with 200 keep-alive connections for 20 s, GET one chat / list page / changes page /
   PATCH in a 5:2:2:1 mix (bench/mixed.lua): requests per second, p50, p99, errors.

    python bench/hostile.py [--backends sqlite,postgresql] [--seconds 20]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench"), os.path.join(ROOT, "tests")]

from run import Served, drive, flask_command  # noqa: E402
from serving import SlowClients  # noqa: E402  (the suite's slow clients, with a longer request)

SESSION_ID = "01JH0ST000000000000000000A"
JID = "6281200000100@s.whatsapp.net"
SLOW_IDLE, SLOW_TRICKLING, NORMAL_GETS = 500, 500, 50


def seed(env):
    flask_command(env, "init-db")
    flask_command(env, "create-org", "hostile", "--id", "hostile")
    flask_command(env, "create-session", "hostile", "--id", SESSION_ID)
    lines = [json.dumps({"jid": f"62812{n:08d}@s.whatsapp.net", "name": f"Chat {n}",
                         "lastMessageAt": 1_700_000_000_000 + n}) + "\n" for n in range(1000)]
    flask_command(env, "import-chats", SESSION_ID, "-", stdin_lines=lines)
    return flask_command(env, "create-api-key", "hostile", "--capabilities", "read,send")


def timed_gets(url, key, count, timeout):
    """(latencies in ms of the answered ones, failures)."""
    latencies, failures = [], 0
    for _ in range(count):
        started = time.perf_counter()
        try:
            ok = requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout).status_code == 200
        except requests.RequestException:
            ok = False
        if ok:
            latencies.append((time.perf_counter() - started) * 1000)
        else:
            failures += 1
    return latencies, failures


def slow_client_run(env, key, worker_class, gets, timeout):
    served = Served("app:app", {**env, "GUNICORN_WORKER_CLASS": worker_class})
    slow = SlowClients(served.port, SLOW_IDLE, SLOW_TRICKLING, padding=2000)
    try:
        time.sleep(1)
        latencies, failures = timed_gets(f"{served.base}/api/v1/sessions/{SESSION_ID}/chats/{JID}", key, gets,
                                         timeout)
        still_open = slow.still_open()
    finally:
        slow.close()
        served.stop()
    return latencies, failures, still_open


LONG_POLLS = 1000


def long_poll_run(env, key, gets):
    """(GET latencies in ms, failures, polls answered after the PATCH, seconds from the PATCH to the last answer)."""
    served = Served("app:app", env)
    base, headers = served.base, {"Authorization": f"Bearer {key}"}
    try:
        since = requests.get(f"{base}/api/v1/sessions/{SESSION_ID}/changes", headers=headers, params={"limit": 1000},
                             timeout=10).json()["nextSince"]
        request = (f"GET /api/v1/sessions/{SESSION_ID}/changes?since={since}&wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Authorization: Bearer {key}\r\n\r\n").encode()
        polls = []
        for _ in range(LONG_POLLS):
            sock = socket.create_connection(("127.0.0.1", served.port))
            sock.sendall(request)
            polls.append(sock)
        time.sleep(2)
        latencies, failures = timed_gets(f"{base}/api/v1/sessions/{SESSION_ID}/chats/{JID}", key, gets, 10)
        patched = time.monotonic()
        requests.patch(f"{base}/api/v1/sessions/{SESSION_ID}/chats/{JID}", json={"archived": True}, headers=headers,
                       timeout=10).raise_for_status()
        answered, last = 0, 0.0
        for sock in polls:
            sock.settimeout(max(0.1, patched + 10 - time.monotonic()))
            try:
                if sock.recv(12).startswith(b"HTTP/1.1 200"):
                    answered += 1
                    last = time.monotonic() - patched
            except OSError:
                pass
            sock.close()
    finally:
        served.stop()
    return latencies, failures, answered, last


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def bench_backend(backend, url, seconds):
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": "4",
           "SECRET_KEY": "hostile-bench"}
    key = seed(env)
    print(f"\n### {backend}\n")
    latencies, failures, still_open = slow_client_run(env, key, "gevent", NORMAL_GETS, 10)
    print(f"slow clients ({SLOW_IDLE} idle + {SLOW_TRICKLING} trickling, {still_open} still open at the end), "
          f"{NORMAL_GETS} GETs, gevent workers: p50 {statistics.median(latencies):.1f} ms, "
          f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms, failures {failures}")
    latencies, failures, _ = slow_client_run(env, key, "sync", 3, 3)
    print(f"the same with gunicorn's sync workers: 3 GETs, {failures} timed out after 3 s"
          + (f", answered ones {', '.join(f'{value:.0f}' for value in latencies)} ms" if latencies else ""))
    latencies, failures, answered, last = long_poll_run(env, key, NORMAL_GETS)
    print(f"{LONG_POLLS} long-polls waiting, {NORMAL_GETS} GETs: p50 {statistics.median(latencies):.1f} ms, "
          f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms, failures {failures}; "
          f"then one PATCH: {answered} of {LONG_POLLS} polls answered 200, the last {last:.2f} s after it")
    served = Served("app:app", env)
    try:
        rps, p50, p99, errors = drive(f"{served.base}/api/v1/sessions/{SESSION_ID}/chats/{JID}", key, seconds,
                                      200, "mixed.lua")
    finally:
        served.stop()
    print(f"mixed load, 200 keep-alive connections, {seconds} s (GET one 5 : list 2 : changes 2 : PATCH 1): "
          f"{rps:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, non-2xx {errors}")


def scratch_database(backend, name):
    """The URL of an empty database of its own for a run: a new SQLite file, or PostgreSQL's `chatstore_<name>`
    dropped and made again."""
    if backend == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix=f'chatstore-{name}-')}/{name}.db"
    database = f"chatstore_{name}"
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", database], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", database], check=True)
    return f"postgresql://postgres@127.0.0.1:5432/{database}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    for backend in args.backends.split(","):
        bench_backend(backend, scratch_database(backend, "hostile"), args.seconds)


if __name__ == "__main__":
    main()
