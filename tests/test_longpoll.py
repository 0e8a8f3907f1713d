"""Long-poll on the changes feed: GET …/changes?since=…&wait=N holds an empty page until a change commits."""
import threading
import time

import pytest
import requests

from conftest import OTHER_SESSION_ID, SESSION_ID, add_chats, app_environ, chat_url, error_body
from serving import Gunicorn

CHANGES = f"/api/v1/sessions/{SESSION_ID}/changes"
JID = "1@s.whatsapp.net"


def caught_up(client, headers, **query):
    """The nextSince of a client that has read everything so far."""
    page = client.get(CHANGES, query_string=query, headers=headers).get_json()
    assert page["hasMore"] is False
    return page["nextSince"]


@pytest.mark.parametrize("wait", ["31", "-1", "1.5", "abc", "1e1", " 3"])
def test_a_wait_outside_0_to_30_seconds_is_422_naming_it(client, headers, orgs, wait):
    response = client.get(CHANGES, query_string={"wait": wait}, headers=headers)
    assert response.status_code == 422
    assert response.get_json() == error_body("validation_error", "invalid wait",
                                             {"wait": ["must be a whole number of seconds from 0 to 30"]})


def test_refusals_come_at_once_whatever_the_wait(client, tokens, orgs):
    cases = [
        ({}, CHANGES, {}, error_body("unauthorized",
                                     "missing Authorization header; send Authorization: Bearer <token>")),
        ({"Authorization": f"Bearer {tokens['send']}"}, CHANGES, {},
         error_body("forbidden", "this token lacks the 'read' capability")),
        ({"Authorization": f"Bearer {tokens['read']}"}, f"/api/v1/sessions/{OTHER_SESSION_ID}/changes", {},
         error_body("not_found", "session not found")),
        ({"Authorization": f"Bearer {tokens['read']}"}, CHANGES, {"since": "garbage"},
         error_body("validation_error", "invalid since",
                    {"since": ["since was not issued by this server for this session's changes"]})),
    ]
    for headers, url, query, body in cases:
        started = time.monotonic()
        response = client.get(url, query_string={"wait": 30, **query}, headers=headers)
        assert response.get_json() == body, url
        assert response.status_code == {"unauthorized": 401, "forbidden": 403, "not_found": 404,
                                         "validation_error": 422}[body["error"]["code"]]
        assert time.monotonic() - started < 1, url


def test_a_waiting_poll_answers_within_a_second_of_the_commit(app, headers, orgs):
    add_chats(SESSION_ID, {"jid": JID})
    client = app.test_client()
    since = caught_up(client, headers)
    answers = []
    poll = threading.Thread(target=lambda: answers.append(
        (app.test_client().get(CHANGES, query_string={"since": since, "wait": 20}, headers=headers),
         time.monotonic())))
    poll.start()
    time.sleep(1.5)
    assert not answers  # still waiting: nothing changed
    committed = time.monotonic()
    assert client.patch(chat_url(SESSION_ID, JID), json={"archived": True}, headers=headers).status_code == 200
    poll.join(10)
    [(response, answered)] = answers
    assert response.status_code == 200 and answered - committed < 1
    page = response.get_json()
    assert [(change["jid"], change["changedBy"], change["chat"]["archived"]) for change in page["data"]] == [
        (JID, "api", True)]
    assert page["hasMore"] is False and page["nextSince"] != since


def test_nothing_coming_answers_the_empty_page_when_the_wait_ends(client, headers, orgs):
    since = caught_up(client, headers)
    started = time.monotonic()
    response = client.get(CHANGES, query_string={"since": since, "wait": 1}, headers=headers)
    assert 1 <= time.monotonic() - started < 2
    assert response.status_code == 200
    assert response.get_json() == {"data": [], "nextSince": since, "hasMore": False}


def test_a_filtered_poll_waits_on_past_the_other_kind(app, headers, worker_headers, orgs):
    """changedBy=api: a sync meanwhile moves the position on, but only a PATCH ends the wait."""
    add_chats(SESSION_ID, {"jid": JID})
    client = app.test_client()
    since = caught_up(client, worker_headers, changedBy="api")
    answers = []
    poll = threading.Thread(target=lambda: answers.append(app.test_client().get(
        CHANGES, query_string={"since": since, "wait": 20, "changedBy": "api"}, headers=worker_headers)))
    poll.start()
    time.sleep(0.5)
    sync = client.post(f"/api/v1/sessions/{SESSION_ID}/sync", json={"upsert": [{"jid": "2@g.us"}]},
                       headers=worker_headers)
    assert sync.status_code == 200
    time.sleep(1.5)
    assert not answers  # the sync's change is not of the kind asked for
    assert client.patch(chat_url(SESSION_ID, JID), json={"pinned": True}, headers=headers).status_code == 200
    poll.join(10)
    [response] = answers
    assert [(change["jid"], change["changedBy"]) for change in response.get_json()["data"]] == [(JID, "api")]


def test_waiting_polls_hold_no_connection_and_any_worker_wakes_them(database_url, identity_provider, keys, orgs,
                                                                  tmp_path):
    """Through gunicorn, 2 workers and a pool of 2 connections each: 100 polls wait at once, a GET still answers
    at once, and a PATCH through any worker wakes every poll within a second."""
    add_chats(SESSION_ID, {"jid": JID})
    served = Gunicorn({**app_environ(database_url, identity_provider), "DB_POOL_SIZE": "2"},
                      tmp_path / "gunicorn.log", workers=2)
    headers = {"Authorization": f"Bearer {keys['read,send']}"}
    try:
        since = requests.get(served.base + CHANGES, headers=headers, timeout=10).json()["nextSince"]
        answers = []

        def poll():
            response = requests.get(served.base + CHANGES, params={"since": since, "wait": 25}, headers=headers,
                                    timeout=40)
            answers.append((response, time.monotonic()))
        polls = [threading.Thread(target=poll) for _ in range(100)]
        for thread in polls:
            thread.start()
        time.sleep(2)
        started = time.monotonic()
        got = requests.get(served.base + chat_url(SESSION_ID, JID), headers=headers, timeout=10)
        assert got.status_code == 200 and time.monotonic() - started < 1 and not answers
        committed = time.monotonic()
        patched = requests.patch(served.base + chat_url(SESSION_ID, JID), json={"archived": True}, headers=headers,
                                 timeout=10)
        assert patched.status_code == 200
        for thread in polls:
            thread.join(30)
        assert len(answers) == 100
        assert all(response.status_code == 200 and [change["jid"] for change in response.json()["data"]] == [JID]
                   for response, _ in answers)
        assert max(answered for _, answered in answers) - committed < 1.5
    finally:
        log = served.stop()
    assert "Traceback" not in log


def test_a_stop_answers_the_waiting_polls_at_once(database_url, identity_provider, keys, orgs, tmp_path):
    """TERM: every waiting poll is answered at once (its empty page, a true answer), rather than holding the stop
    for the polls' 30 s; gunicorn then exits (an idle keep-alive connection may hold a worker its 5 s)."""
    served = Gunicorn(app_environ(database_url, identity_provider), tmp_path / "gunicorn.log", workers=2)
    headers = {"Authorization": f"Bearer {keys['read']}"}
    since = requests.get(served.base + CHANGES, headers=headers, timeout=10).json()["nextSince"]
    answers = []

    def poll():
        response = requests.get(served.base + CHANGES, params={"since": since, "wait": 30}, headers=headers,
                                timeout=40)
        answers.append((response.status_code, response.json(), time.monotonic()))
    polls = [threading.Thread(target=poll) for _ in range(10)]
    for thread in polls:
        thread.start()
    time.sleep(1.5)
    stopped = time.monotonic()
    served.process.terminate()
    for thread in polls:
        thread.join(10)
    served.process.wait(timeout=15)
    assert time.monotonic() - stopped < 10
    assert [(status, body) for status, body, _ in answers] == [
        (200, {"data": [], "nextSince": since, "hasMore": False})] * 10
    assert max(answered for _, _, answered in answers) - stopped < 2
    assert "Traceback" not in served.stop()
