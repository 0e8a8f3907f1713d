"""Against a real gunicorn with 4 workers: concurrent writes, the pin limit, revocation."""
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import models
from conftest import SESSION_ID, add_chats, app_environ, apply_changes, connected, stored
from serving import Gunicorn

WORKERS = 4


@pytest.fixture(scope="module")
def gunicorn(database_url, identity_provider, tmp_path_factory):
    """gunicorn serving app:app on the test database, for this module's tests; yields its base URL."""
    served = Gunicorn(app_environ(database_url, identity_provider),
                      tmp_path_factory.mktemp("gunicorn") / "gunicorn.log", workers=WORKERS)
    yield served.base, served.process
    served_log = served.stop()
    assert "Traceback" not in served_log
    # API keys start csk_, JWTs eyJ: neither may reach the server's log.
    assert "csk_" not in served_log and "eyJ" not in served_log
    assert "chatstore.request" in served_log


@pytest.fixture
def server(gunicorn, app):
    """The served app's base URL, its data emptied like every test's."""
    return gunicorn[0]


@pytest.fixture
def gunicorn_process(gunicorn):
    return gunicorn[1]


def simultaneously(calls):
    """Run the calls at the same moment, one thread each; return their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_simultaneous_patches_of_different_fields_all_persist(server, headers, orgs):
    jid = "6281234567890@s.whatsapp.net"
    add_chats(SESSION_ID, {"jid": jid})
    url = f"{server}/api/v1/sessions/{SESSION_ID}/chats/{jid}"
    future = int(time.time() * 1000) + 86_400_000
    with requests.Session() as http:
        for round_number in range(5):
            archived, muted_until = round_number % 2 == 0, future + round_number
            bodies = [{"archived": archived} if n % 2 else {"mutedUntil": muted_until} for n in range(20)]
            answers = simultaneously([
                (lambda body=body: requests.patch(url, json=body, headers=headers, timeout=30)) for body in bodies])
            assert [answer.status_code for answer in answers] == [200] * 20
            row = stored(jid)
            assert (row["archived"], row["muted_until"]) == (archived, muted_until), round_number
            assert http.get(url, headers=headers).json()["mutedUntil"] == muted_until


def test_simultaneous_pins_stop_at_the_limit(server, headers, orgs):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net"} for n in range(10)))
    urls = [f"{server}/api/v1/sessions/{SESSION_ID}/chats/{n}@s.whatsapp.net" for n in range(10)]
    answers = simultaneously([
        (lambda url=url: requests.patch(url, json={"pinned": True}, headers=headers, timeout=30)) for url in urls])
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * 3 + [422] * 7
    assert all(answer.json()["error"]["details"] == {"pinned": [
        "at most 3 chats can be pinned at once; unpin one first"]} for answer in answers if answer.status_code == 422)
    assert _pinned_count() == 3


@connected
def _pinned_count():
    return models.Chat.select().where(models.Chat.pinned == True).count()  # noqa: E712


def test_revocation_is_at_once_in_every_worker(server, keys, orgs):
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    headers = {"Authorization": f"Bearer {keys['read']}"}
    url = f"{server}/api/v1/sessions/{SESSION_ID}/chats"
    # Many requests, spread across every worker, before the revocation.
    before = simultaneously([(lambda: requests.get(url, headers=headers, timeout=30))] * 16)
    assert {answer.status_code for answer in before} == {200}
    _revoke("reader")
    after = simultaneously([(lambda: requests.get(url, headers=headers, timeout=30))] * 16)
    assert {answer.status_code for answer in after} == {401}
    assert after[0].json() == {"error": {"code": "unauthorized", "message": "API key has been revoked",
                                         "details": {}}}


@connected
def _revoke(name):
    models.ApiKey.update(revoked_at=models.now_utc()).where(models.ApiKey.name == name).execute()


def test_curl_shapes_over_http(server, headers, orgs):
    """What a curl user sends: %40 in the path, a body without Content-Type, a HEAD."""
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    url = f"{server}/api/v1/sessions/{SESSION_ID}/chats/1%40s.whatsapp.net"
    assert requests.get(url, headers=headers, timeout=10).json()["jid"] == "1@s.whatsapp.net"
    response = requests.patch(url, data=b'{"archived":true}', headers={
        **headers, "Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert response.status_code == 200 and response.json()["archived"] is True
    response = requests.delete(url, timeout=10)
    assert response.status_code == 405
    assert sorted(response.headers["Allow"].split(", ")) == ["GET", "HEAD", "OPTIONS", "PATCH"]
    assert response.json() == {"error": {"code": "method_not_allowed", "message": "method not allowed",
                                         "details": {}}}


def worker_pids(server_process_pid):
    result = subprocess.run(["pgrep", "-P", str(server_process_pid)], capture_output=True, text=True)
    return sorted(int(pid) for pid in result.stdout.split())


def test_killed_workers_leave_no_half_written_chat(server, gunicorn_process, headers, orgs):
    """PATCHes write two fields that must agree; workers are SIGKILLed while they run."""
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    url = f"{server}/api/v1/sessions/{SESSION_ID}/chats/1@s.whatsapp.net"
    base = int(time.time() * 1000) + 86_400_000
    stop = threading.Event()

    def patcher(offset):
        n = offset
        while not stop.is_set():
            n += 2
            archived = n % 4 == 0
            try:
                requests.patch(url, json={"archived": archived, "mutedUntil": base + n}, headers=headers, timeout=5)
            except requests.RequestException:
                pass  # the worker serving it was killed
    threads = [threading.Thread(target=patcher, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(6):
        time.sleep(0.15)
        pids = worker_pids(gunicorn_process.pid)
        if pids:
            os.kill(pids[0], signal.SIGKILL)
    stop.set()
    for thread in threads:
        thread.join()
    row = stored("1@s.whatsapp.net")
    n = row["muted_until"] - base
    assert row["archived"] == (n % 4 == 0), row


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
                    reason="stops and starts the PostgreSQL server; runs in the PostgreSQL pass")
def test_postgresql_stopped_mid_load(server, gunicorn_process, headers, orgs):
    """503 while the database is down, full service once it is back, and no worker restarted."""
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    url = f"{server}/api/v1/sessions/{SESSION_ID}/chats"
    workers_before = worker_pids(gunicorn_process.pid)
    statuses, stop = [], threading.Event()

    def load():
        with requests.Session() as http:
            while not stop.is_set():
                statuses.append(http.get(url, headers=headers, timeout=10).status_code)
    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    cluster = ["pg_ctlcluster", "--skip-systemctl-redirect", os.listdir("/etc/postgresql")[0], "main"]
    try:
        time.sleep(0.5)
        subprocess.run(cluster + ["stop", "-m", "fast"], check=True, timeout=60)
        time.sleep(1)
        down = requests.get(url, headers=headers, timeout=10)
        assert down.status_code == 503 and down.json()["error"]["code"] == "unavailable"
    finally:
        subprocess.run(cluster + ["start"], check=True, timeout=60)
        # This process's idle connections died with the server; its contexts (connection_context) can't
        # follow a connection replaced mid-read, as a served request does.
        models.database.close_idle()
    time.sleep(1)
    mark = len(statuses)
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join()
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert 503 in statuses and statuses[mark:] and set(statuses[mark:]) == {200}
    assert worker_pids(gunicorn_process.pid) == workers_before


def test_a_chunked_body_over_the_limit_is_413(server, headers, orgs):
    """No Content-Length to refuse up front: the body is measured as it is read."""
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    url = f"{server}/api/v1/sessions/{SESSION_ID}/chats/1@s.whatsapp.net"
    big = b'{"archived": true, "pad": "' + b"a" * 70_000 + b'"}'
    response = requests.patch(url, data=iter([big[:1000], big[1000:]]), headers=headers, timeout=10)
    assert response.status_code == 413
    assert response.json() == {"error": {"code": "payload_too_large", "message": "request body too large",
                                         "details": {}}}
    small = requests.patch(url, data=iter([b'{"archived": ', b"true}"]), headers=headers, timeout=10)
    assert small.status_code == 200 and small.json()["archived"] is True
    assert stored("1@s.whatsapp.net")["archived"] is True


def test_a_feed_follower_misses_nothing_while_workers_write(server, headers, orgs):
    """PATCHes and syncs from several threads, through 4 gunicorn workers, while a follower polls the feed."""
    import random

    from cli import issue_api_key
    worker = {"Authorization": f"Bearer {connected(issue_api_key)('acme', 'read,sync', 'worker')}"}
    base = f"{server}/api/v1/sessions/{SESSION_ID}"
    jids = [f"{n}@s.whatsapp.net" for n in range(60)]
    add_chats(SESSION_ID, *({"jid": jid} for jid in jids[:40]))
    stop, statuses = threading.Event(), []

    def patcher(seed):
        rng = random.Random(seed)
        with requests.Session() as http:
            while not stop.is_set():
                body = {"archived": rng.random() < 0.5} if rng.random() < 0.5 else {"mutedUntil": -1}
                statuses.append(http.patch(f"{base}/chats/{rng.choice(jids)}", json=body, headers=headers,
                                           timeout=30).status_code)

    def syncer(seed):
        rng = random.Random(seed)
        with requests.Session() as http:
            while not stop.is_set():
                chosen = rng.sample(jids, 6)
                body = {"upsert": [{"jid": jid, "unreadCount": rng.randrange(50)} for jid in chosen[:4]],
                        "delete": chosen[4:]}
                statuses.append(http.post(f"{base}/sync", json=body, headers=worker, timeout=30).status_code)

    copy, since, pages = {}, None, 0

    def follow_once(http):
        nonlocal since, pages
        params = {"limit": 7, **({"since": since} if since else {})}
        page = http.get(f"{base}/changes", params=params, headers=headers, timeout=30).json()
        pages += 1
        apply_changes(copy, page)
        since = page["nextSince"]
        return page["hasMore"]

    writers = [threading.Thread(target=patcher, args=(n,)) for n in range(3)]
    writers += [threading.Thread(target=syncer, args=(n + 10,)) for n in range(2)]
    for thread in writers:
        thread.start()
    with requests.Session() as http:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            follow_once(http)
        stop.set()
        for thread in writers:
            thread.join()
        while follow_once(http):
            pass
        state, cursor = {}, None
        while True:
            page = http.get(f"{base}/chats", params={"limit": 200, **({"cursor": cursor} if cursor else {})},
                            headers=headers, timeout=30).json()
            state.update((chat["jid"], chat) for chat in page["data"])
            cursor = page["nextCursor"]
            if cursor is None:
                break
    assert set(statuses) <= {200, 404}, sorted(set(statuses))
    assert statuses.count(200) > 50 and pages > 20
    assert copy == state
