"""Behind a real PgBouncer in transaction pooling: every read answers right, whatever server connection it lands on.

PgBouncer hands each statement outside a transaction to the next free server
connection (round robin here), so a client connection's prepared reads
(prepared.py) meet servers that have them, and servers that don't. Runs in the
PostgreSQL pass; `make test` skips it when pgbouncer is not installed, and
.ci/run installs it and sets CHATSTORE_PGBOUNCER_TESTS=required, so there it must run.
"""
import dataclasses
import json
import os
import shutil
import subprocess
import threading
import time

import psycopg2
import pytest

import models
from api.inputs import signing_key
from push import registry
from push.delivery import Deliverer
from receiver import Receiver
from store import prepared
from conftest import OTHER_SESSION_ID, SESSION_ID, add_chats, chat_url, error_body
from counting import CountingPgConnection, STATEMENTS
from serving import free_port

TEST_URL = os.environ.get("TEST_DATABASE_URL", "")
if not TEST_URL.startswith("postgres"):
    pytest.skip("PgBouncer in front of PostgreSQL; runs in the PostgreSQL pass", allow_module_level=True)
PGBOUNCER = shutil.which("pgbouncer") or shutil.which("/usr/sbin/pgbouncer")
if not PGBOUNCER:
    if os.environ.get("CHATSTORE_PGBOUNCER_TESTS") == "required":
        raise RuntimeError("PgBouncer tests are required here, but pgbouncer is not installed")
    pytest.skip("PgBouncer tests skipped: no pgbouncer (apt-get install pgbouncer)", allow_module_level=True)

SERVER_CONNECTIONS = 3


@pytest.fixture(scope="module")
def pgbouncer_url(tmp_path_factory):
    """PgBouncer in transaction pooling on a port of its own, with SERVER_CONNECTIONS to the test database."""
    folder = tmp_path_factory.mktemp("pgbouncer")
    folder.chmod(0o755)  # pgbouncer drops to the postgres user when started as root
    port = free_port()
    (folder / "userlist.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        "test = host=127.0.0.1 port=5432 dbname=test user=postgres\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\nmin_pool_size = {SERVER_CONNECTIONS}\n"
        "server_round_robin = 1\nignore_startup_parameters = extra_float_digits\n")
    for name in ("userlist.txt", "pgbouncer.ini"):
        (folder / name).chmod(0o644)
    command = [PGBOUNCER, "-q", str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "postgres"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"postgresql://postgres@127.0.0.1:{port}/test"
    deadline = time.monotonic() + 15
    while True:
        try:
            psycopg2.connect(url).close()
            break
        except psycopg2.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"pgbouncer did not start: {process.stderr.read().decode()[-500:]}")
            time.sleep(0.1)
    _open_every_server_connection(url)
    yield url
    process.terminate()
    process.wait(timeout=10)


def _open_every_server_connection(url):
    """SERVER_CONNECTIONS transactions at once, so PgBouncer opens that many server connections to rotate over."""
    clients = [psycopg2.connect(url) for _ in range(SERVER_CONNECTIONS)]
    for connection in clients:
        connection.cursor().execute("SELECT 1")  # psycopg2 opens a transaction: the server connection is held
    for connection in clients:
        connection.commit()  # back to PgBouncer clean (closed mid-transaction, it would close the server's too)
        connection.close()


@pytest.fixture
def through_pgbouncer(app, pgbouncer_url):
    """The app's reads go through PgBouncer, on a pool whose connections count what they send."""
    pool = models._pooled_database(pgbouncer_url, 10, connection_factory=CountingPgConnection)
    models.database.initialize(pool)
    STATEMENTS.clear()
    yield STATEMENTS
    pool.close_all()
    models.bind_database(TEST_URL)


def test_every_read_answers_right_on_whichever_server_connection_it_lands(client, headers, orgs,
                                                                          through_pgbouncer):
    add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net", "lastMessageAt": 1_700_000_000_000 + n}
                            for n in range(6)))
    urls = [chat_url(SESSION_ID, "1@s.whatsapp.net"), chat_url(SESSION_ID) + "?limit=2",
            chat_url(SESSION_ID) + "?limit=2&archived=false&type=dm", f"/api/v1/sessions/{SESSION_ID}/changes?limit=2",
            chat_url(OTHER_SESSION_ID, "1@s.whatsapp.net")]
    answers = {url: [] for url in urls}
    for _ in range(8):
        for url in urls:
            response = client.get(url, headers=headers)
            answers[url].append((response.status_code, response.headers.get("ETag"), response.get_json()))
    prepares = [sql.split()[1] for sql in through_pgbouncer if sql.startswith("PREPARE " + prepared.NAME_PREFIX)]
    # Some statement met a server connection that did not have it after another had prepared it: the reads
    # really did move between server connections.
    assert max(prepares.count(name) for name in prepares) >= 2, through_pgbouncer

    models.bind_database(TEST_URL)  # the same requests straight to PostgreSQL: every answer above is this one
    for url in urls:
        direct = client.get(url, headers=headers)
        expected = (direct.status_code, direct.headers.get("ETag"), direct.get_json())
        assert all(answer == expected for answer in answers[url]), (url, answers[url], expected)
    one, page, filtered, changes, other = (client.get(url, headers=headers) for url in urls)
    assert one.status_code == 200 and one.get_json()["jid"] == "1@s.whatsapp.net"
    assert [chat["jid"] for chat in page.get_json()["data"]] == ["5@s.whatsapp.net", "4@s.whatsapp.net"]
    assert [chat["jid"] for chat in filtered.get_json()["data"]] == ["5@s.whatsapp.net", "4@s.whatsapp.net"]
    assert [change["jid"] for change in changes.get_json()["data"]] == ["0@s.whatsapp.net", "1@s.whatsapp.net"]
    assert other.status_code == 404 and other.get_json() == error_body("not_found", "session not found")


def test_two_delivery_loops_deliver_through_pgbouncer_in_order(app, client, orgs, through_pgbouncer):
    """Webhook delivery's claims (FOR UPDATE SKIP LOCKED), leases and outcomes hold no session state: two delivery
    loops through PgBouncer in transaction pooling deliver every change once per batch, in order."""
    receiver = Receiver()
    config = dataclasses.replace(app.config["CHATSTORE"], webhook_allow_private_targets=True, webhook_batch_size=2)
    with app.app_context(), models.database.connection_context():
        key = signing_key()
        _, secret = registry.register(config, "acme", receiver.url + "/hook", None, None, None)
    receiver.secrets.append(secret)
    loops = [Deliverer(config, key) for _ in range(2)]
    threads = [threading.Thread(target=loop.run, daemon=True) for loop in loops]
    try:
        for thread in threads:
            thread.start()
        add_chats(SESSION_ID, *({"jid": f"{n}@s.whatsapp.net", "unreadCount": n} for n in range(7)))
        got = receiver.wait_for(lambda got: sum(len(json.loads(d["body"])["data"]["changes"]) for d in got) >= 7)
    finally:
        for loop in loops:
            loop.stop()
        for thread in threads:
            thread.join(15)
        receiver.stop()
    bodies = [json.loads(delivery["body"]) for delivery in got]
    assert all(delivery["verified_by"] == [secret] for delivery in got)
    assert [change["jid"] for body in bodies for change in body["data"]["changes"]] == [
        f"{n}@s.whatsapp.net" for n in range(7)]
    assert [body["data"]["since"] for body in bodies[1:]] == [body["data"]["nextSince"] for body in bodies[:-1]]
