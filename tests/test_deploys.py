"""Served as the Procfile serves it: slow and idle clients, reloads and stops under load, metrics across workers.

Each test runs its own gunicorn (`gunicorn app:app --config gunicorn.conf.py`), since some signal it.
These tests assert behaviour (answered, not failed); the figures are `make hostile`'s.
"""
import contextlib
import re
import signal
import sqlite3
import threading
import time

import psycopg2
import pytest
import requests

from store import change_order
from store import sql as store_sql
from conftest import SESSION_ID, add_chats, app_environ, stored
from serving import Gunicorn, SlowClients

JID = "1@s.whatsapp.net"
METRICS_TOKEN = "scrape-me-0123456789"


@pytest.fixture
def serve(database_url, identity_provider, tmp_path, app):
    """Start gunicorn with extra settings; stopped (and its log checked) when the test ends."""
    started = []

    def start(workers=2, **environ):
        served = Gunicorn({**app_environ(database_url, identity_provider), **environ},
                          tmp_path / f"gunicorn-{len(started)}.log", workers=workers)
        started.append(served)
        return served
    yield start
    for served in started:
        log = served.stop()
        assert "Traceback" not in log and "csk_" not in log and "eyJ" not in log, log[-3000:]


def test_a_thousand_idle_and_trickling_connections_do_not_stall_other_callers(serve, keys):
    add_chats(SESSION_ID, {"jid": JID})
    served = serve(workers=4)
    url = f"{served.base}/api/v1/sessions/{SESSION_ID}/chats/{JID}"
    headers = {"Authorization": f"Bearer {keys['read']}"}
    slow = SlowClients(served.port, idle=500, trickling=500)
    try:
        time.sleep(0.5)
        # Each on a new connection, as a new caller would come; a stalled server would time these out.
        answers = [requests.get(url, headers=headers, timeout=10) for _ in range(30)]
    finally:
        slow.close()
    assert [answer.status_code for answer in answers] == [200] * 30


def load(base, headers, stop, outcomes, patch=False):
    """One keep-alive client: GETs (or alternating PATCHes) until told to stop; outcome per request."""
    url = f"{base}/api/v1/sessions/{SESSION_ID}/chats/{JID}"
    with requests.Session() as http:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                if patch:
                    answer = http.patch(url, json={"archived": n % 2 == 0}, headers=headers, timeout=30)
                else:
                    answer = http.get(url, headers=headers, timeout=30)
                outcomes.append(answer.status_code)
            except requests.RequestException as error:
                outcomes.append(type(error).__name__)


def run_load(base, headers, clients):
    stop, outcomes = threading.Event(), []
    threads = [threading.Thread(target=load, args=(base, headers, stop, outcomes, n % 2 == 1))
               for n in range(clients)]
    for thread in threads:
        thread.start()

    def finish():
        stop.set()
        for thread in threads:
            thread.join()
        return outcomes
    return finish


def worker_pids(master_pid):
    with open(f"/proc/{master_pid}/task/{master_pid}/children") as children:
        return sorted(int(pid) for pid in children.read().split())


def test_a_reload_under_load_fails_no_request(serve, keys):
    add_chats(SESSION_ID, {"jid": JID})
    served = serve(workers=2, GUNICORN_GRACEFUL_TIMEOUT="10")
    before = worker_pids(served.process.pid)
    finish = run_load(served.base, {"Authorization": f"Bearer {keys['read,send']}"}, clients=8)
    time.sleep(1)
    served.process.send_signal(signal.SIGHUP)
    time.sleep(3)
    outcomes = finish()
    after = worker_pids(served.process.pid)
    assert set(before).isdisjoint(after) and len(after) == 2, (before, after)
    assert len(outcomes) > 200 and set(outcomes) == {200}, sorted(set(map(str, outcomes)))


@contextlib.contextmanager
def session_locked(database_url):
    """Another connection holds the lock a PATCH needs (the session's advisory lock; SQLite's write lock)."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url[len("sqlite:///"):], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    else:
        holder = psycopg2.connect(database_url)  # not autocommit: the lock lasts until the rollback below
        holder.cursor().execute(store_sql.driver_text(change_order.LOCK_SQL, postgresql=True), {"session_id": SESSION_ID})
    try:
        yield
    finally:
        holder.rollback() if not database_url.startswith("sqlite") else holder.execute("ROLLBACK")
        holder.close()


def test_a_stop_under_load_answers_every_accepted_request_then_exits(serve, keys, database_url):
    add_chats(SESSION_ID, {"jid": JID})
    served = serve(workers=2, GUNICORN_GRACEFUL_TIMEOUT="8")
    headers = {"Authorization": f"Bearer {keys['read,send']}"}
    url = f"{served.base}/api/v1/sessions/{SESSION_ID}/chats/{JID}"
    finish = run_load(served.base, headers, clients=4)
    in_flight, answers = [], []
    with session_locked(database_url):
        # PATCHes the workers have accepted and are working on: they wait for the lock.
        for n in range(6):
            thread = threading.Thread(target=lambda: answers.append((
                requests.patch(url, json={"mutedUntil": -1}, headers=headers, timeout=30).status_code,
                time.monotonic())))
            thread.start()
            in_flight.append(thread)
        time.sleep(0.5)
        served.process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        time.sleep(1)
        lock_ends = time.monotonic()
    for thread in in_flight:
        thread.join()
    exit_code = served.process.wait(timeout=30)
    took = time.monotonic() - stopped_at
    outcomes = finish()
    assert [status for status, _ in answers] == [200] * 6
    assert all(answered_at > lock_ends for _, answered_at in answers)  # each waited for the session's lock
    assert stored(JID)["muted_until"] == -1
    assert exit_code == 0 and took < 8 + 2, took
    # Load that came after the stop found the door closed; nothing that got an answer got an error.
    assert {outcome for outcome in outcomes if isinstance(outcome, int)} == {200}
    assert set(outcome for outcome in outcomes if not isinstance(outcome, int)) <= {"ConnectionError"}


def test_metrics_add_up_every_workers_requests(serve, keys):
    add_chats(SESSION_ID, {"jid": JID})
    served = serve(workers=4, METRICS_TOKEN=METRICS_TOKEN)
    url = f"{served.base}/api/v1/sessions/{SESSION_ID}/chats/{JID}"
    headers = {"Authorization": f"Bearer {keys['read']}"}
    for _ in range(200):  # new connections, spread over the workers
        answer = requests.get(url, headers=headers, timeout=10)
        assert answer.status_code == 200
    for _ in range(10):
        requests.get(f"{served.base}/api/v1/sessions/{SESSION_ID}/chats/9@s.whatsapp.net", headers=headers,
                     timeout=10)
    text = requests.get(f"{served.base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                        timeout=10).text
    route = "/api/v1/sessions/<sid>/chats/<path:cid>"
    counts = {labels: float(value) for labels, value in re.findall(
        r'^chatstore_http_requests_total\{(.*)\} (\S+)$', text, re.M)}
    assert counts[f'method="GET",route="{route}",status="200"'] == 200
    assert counts[f'method="GET",route="{route}",status="404"'] == 10
    histogram = re.search(r'^chatstore_http_request_duration_seconds_count\{method="GET",route="'
                          + re.escape(route) + r'"\} (\S+)$', text, re.M)
    assert float(histogram.group(1)) == 210
    every_latency = re.search(r'^chatstore_http_request_duration_seconds_bucket\{le="\+Inf",method="GET",route="'
                              + re.escape(route) + r'"\} (\S+)$', text, re.M)
    assert float(every_latency.group(1)) == 210
    assert requests.get(f"{served.base}/metrics", timeout=10).status_code == 401


def test_request_ids_are_echoed_and_logged(serve, keys):
    served = serve(workers=2)
    kept = requests.get(f"{served.base}/healthz", headers={"X-Request-ID": "trace-7f3a.9"}, timeout=10)
    made = requests.get(f"{served.base}/nope", headers={"X-Request-ID": "no spaces allowed"}, timeout=10)
    assert kept.headers["X-Request-ID"] == "trace-7f3a.9"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
    time.sleep(0.3)
    log = served.read_log()
    assert "GET /healthz 200" in log and "request_id=trace-7f3a.9" in log
    assert f"request_id={made.headers['X-Request-ID']}" in log
