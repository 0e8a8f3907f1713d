"""GET /metrics (guarded by METRICS_TOKEN) and X-Request-ID, in-process (contract §12)."""
import re

import pytest
from peewee import OperationalError
from prometheus_client import CollectorRegistry, Histogram

from observability import metrics
from store import reads
from conftest import SESSION_ID, add_chats, chat_url, error_body

TOKEN = "metrics-secret-token-1234567890"


def scrape(client, token=TOKEN):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return response.get_data(as_text=True)


SAMPLE = re.compile(r'^(\w+)\{(.*)\} (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def sample(text, name, **labels):
    """The value of the sample with exactly these labels (in any order), 0 when absent."""
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match.group(1) == name and dict(LABEL.findall(match.group(2))) == labels:
            return float(match.group(3))
    return 0.0


def test_unset_metrics_token_is_404(client):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404 and response.get_json() == error_body("not_found", "no such resource")


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_a_wrong_or_missing_token_is_401(make_app, authorization):
    client = make_app(METRICS_TOKEN=TOKEN).test_client()
    response = client.get("/metrics", headers={"Authorization": authorization} if authorization else {})
    assert response.status_code == 401
    assert response.get_json() == error_body("unauthorized",
                                             "send the metrics token: Authorization: Bearer <METRICS_TOKEN>")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_requests_are_counted_by_route_template_method_and_status(make_app, headers, orgs):
    client = make_app(METRICS_TOKEN=TOKEN).test_client()
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    route = "/api/v1/sessions/<sid>/chats/<path:cid>"
    before = scrape(client)
    for _ in range(3):
        client.get(chat_url(SESSION_ID, "1@s.whatsapp.net"), headers=headers)
    client.get(chat_url(SESSION_ID, "2@s.whatsapp.net"), headers=headers)
    client.get("/no/such/path")
    after = scrape(client)
    assert sample(after, "chatstore_http_requests_total", route=route, method="GET", status="200") - sample(
        before, "chatstore_http_requests_total", route=route, method="GET", status="200") == 3
    assert sample(after, "chatstore_http_requests_total", route=route, method="GET", status="404") - sample(
        before, "chatstore_http_requests_total", route=route, method="GET", status="404") == 1
    assert sample(after, "chatstore_http_requests_total", route="unmatched", method="GET", status="404") - sample(
        before, "chatstore_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert sample(after, "chatstore_http_request_duration_seconds_count", route=route, method="GET") - sample(
        before, "chatstore_http_request_duration_seconds_count", route=route, method="GET") == 4
    assert "/no/such/path" not in after and SESSION_ID not in after and "1@s.whatsapp.net" not in after


def test_no_token_or_key_reaches_a_metric(make_app, headers, orgs):
    client = make_app(METRICS_TOKEN=TOKEN).test_client()
    client.get(chat_url(SESSION_ID), headers=headers)
    client.get(chat_url(SESSION_ID), headers={"Authorization": "Bearer csk_made-up"})
    text = scrape(client)
    token = headers["Authorization"].split()[1]
    assert token not in text and "csk_" not in text and TOKEN not in text


def test_database_errors_are_counted(make_app, headers, orgs, monkeypatch):
    client = make_app(METRICS_TOKEN=TOKEN).test_client()
    before = sample(scrape(client), "chatstore_database_errors_total", error="OperationalError")

    def down(*args, **kwargs):
        raise OperationalError("connection refused")
    monkeypatch.setattr(reads, "find_chat", down)
    response = client.get(chat_url(SESSION_ID, "1@s.whatsapp.net"), headers=headers)
    assert response.status_code == 503
    assert sample(scrape(client), "chatstore_database_errors_total", error="OperationalError") == before + 1


def test_jwks_fetches_are_counted(make_app, identity_provider, orgs):
    client = make_app(METRICS_TOKEN=TOKEN).test_client()
    before = sample(scrape(client), "chatstore_jwks_fetches_total", outcome="ok")
    token = identity_provider.mint({"org_id": "acme", "org_role": "admin"})
    assert client.get(chat_url(SESSION_ID), headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert sample(scrape(client), "chatstore_jwks_fetches_total", outcome="ok") == before + 1


@pytest.mark.parametrize("sent, kept", [("abc-123_X.y", True), ("a" * 128, True), ("a" * 129, False),
                                        ("", False), ("bad id", False), ("ünï", False), ("x/y", False)])
def test_a_sane_request_id_is_kept_otherwise_one_is_made(client, sent, kept):
    response = client.get("/healthz", headers={"X-Request-ID": sent})
    echoed = response.headers["X-Request-ID"]
    if kept:
        assert echoed == sent
    else:
        assert echoed != sent and re.fullmatch(r"[0-9a-f]{32}", echoed)


def test_every_answer_carries_a_request_id(client, orgs):
    for response in (client.get("/nope"), client.get(chat_url(SESSION_ID)), client.delete("/healthz")):
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_a_forked_worker_makes_request_ids_of_its_own():
    """gunicorn forks its workers from one loaded app: each must draw ids of its own, not a copy of its parent's."""
    import os

    from observability import request_ids

    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the forked worker: report, then leave without running pytest's exit handlers
        os.write(writer, request_ids.kept_or_made({}).encode())
        os._exit(0)
    os.close(writer)
    parent_id = request_ids.kept_or_made({})
    os.waitpid(child, 0)
    child_id = os.read(reader, 200).decode()
    assert re.fullmatch(r"[0-9a-f]{32}", child_id) and child_id != parent_id
