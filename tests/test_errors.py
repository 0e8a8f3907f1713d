"""The one error envelope for framework errors too; health checks (contract §1, §5)."""
import pytest

import models
from conftest import SESSION_ID, add_chats, chat_url, error_body


@pytest.mark.parametrize("with_key", [False, True])
def test_unknown_path_is_404_whatever_the_credentials(client, headers, with_key):
    response = client.get("/api/v1/nope", headers=headers if with_key else {})
    assert response.status_code == 404
    assert response.content_type == "application/json"
    assert response.get_json() == error_body("not_found", "no such resource")


@pytest.mark.parametrize("with_key", [False, True])
@pytest.mark.parametrize("method, url, allow", [
    ("DELETE", chat_url(SESSION_ID, "1@s.whatsapp.net"), "GET, HEAD, OPTIONS, PATCH"),
    ("POST", chat_url(SESSION_ID), "GET, HEAD, OPTIONS"),
    ("PUT", chat_url(SESSION_ID, "1@s.whatsapp.net"), "GET, HEAD, OPTIONS, PATCH"),
    ("POST", "/healthz", "GET, HEAD, OPTIONS"),
])
def test_wrong_method_is_405_with_allow_whatever_the_credentials(client, headers, with_key, method, url, allow):
    response = client.open(url, method=method, headers=headers if with_key else {})
    assert response.status_code == 405
    assert sorted(response.headers["Allow"].split(", ")) == allow.split(", ")
    assert response.get_json() == error_body("method_not_allowed", "method not allowed")


def test_unexpected_error_is_500_without_details(app, caplog):
    @app.get("/boom")
    def boom():
        raise RuntimeError("SELECT secret FROM table WHERE token='csk_abc'")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json() == error_body("internal_error", "internal error")
    assert "csk_abc" not in response.get_data(as_text=True)


def test_healthz_touches_no_database(make_app):
    app = make_app(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    response = app.test_client().get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_is_ok_when_the_database_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_is_503_when_the_database_does_not_answer(make_app):
    app = make_app(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == error_body("unavailable", "the database is not answering")


def test_chats_answer_503_when_the_database_does_not(make_app, headers):
    app = make_app(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    response = app.test_client().get(chat_url(SESSION_ID), headers=headers)
    assert response.status_code == 503
    assert response.get_json() == error_body("unavailable", "the database is not answering; try again shortly")


@pytest.mark.parametrize("url", [chat_url(SESSION_ID, "1@s.whatsapp.net"), chat_url(SESSION_ID)])
def test_a_hot_read_that_sqlite_aborts_is_503(client, headers, orgs, database_url, url):
    """The hot read goes to the process's read connection (models.SqliteReadConnection): its errors must still
    arrive as peewee's, the 503."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's driver")
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    assert client.get(url, headers=headers).status_code == 200
    read_connection = models.database.obj.reads.connection()
    read_connection.set_progress_handler(lambda: 1, 1)  # SQLite aborts the next statement: "interrupted"
    try:
        response = client.get(url, headers=headers)
    finally:
        read_connection.set_progress_handler(None, 1)
    assert response.status_code == 503
    assert response.get_json() == error_body("unavailable", "the database is not answering; try again shortly")
    assert client.get(url, headers=headers).status_code == 200  # the connection reads on, whole
