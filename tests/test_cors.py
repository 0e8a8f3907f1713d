"""Cross-origin calls (contract §11): CORS_ORIGINS, preflights before authentication, headers on every answer."""
import pytest

from api import cursors
import models
from store import reads
from conftest import OTHER_SESSION_ID, SESSION_ID, add_chats, chat_url, error_body

APP_ORIGIN = "https://app.example.com"
JID = "1@s.whatsapp.net"
EXPOSED = {"ETag", "WWW-Authenticate", "Retry-After", "X-Request-ID"}


@pytest.fixture
def cors_client(make_app, orgs):
    add_chats(SESSION_ID, {"jid": JID})
    return make_app(CORS_ORIGINS=f"{APP_ORIGIN}, http://localhost:5173").test_client()


def preflight(client, url, method, origin=APP_ORIGIN, headers="authorization,content-type"):
    return client.options(url, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                        "Access-Control-Request-Headers": headers})


@pytest.mark.parametrize("url, method, methods", [
    (chat_url(SESSION_ID, JID), "PATCH", "GET, HEAD, OPTIONS, PATCH"),
    (chat_url(SESSION_ID), "GET", "GET, HEAD, OPTIONS"),
    (f"/api/v1/sessions/{SESSION_ID}/sync", "POST", "OPTIONS, POST"),
    (f"/api/v1/sessions/{SESSION_ID}/changes", "GET", "GET, HEAD, OPTIONS"),
])
def test_a_preflight_is_204_with_the_paths_methods_and_needs_no_token(cors_client, url, method, methods):
    response = preflight(cors_client, url, method)
    assert response.status_code == 204 and response.data == b""
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "Origin" in response.headers["Vary"]
    assert response.headers["Access-Control-Allow-Methods"] == methods
    assert response.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type, If-None-Match, If-Match"
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_a_preflight_asking_for_no_headers_still_learns_which_are_allowed(cors_client):
    response = cors_client.options(chat_url(SESSION_ID), headers={"Origin": APP_ORIGIN,
                                                                  "Access-Control-Request-Method": "GET"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type, If-None-Match, If-Match"


@pytest.mark.parametrize("origin", ["https://evil.example.com", "http://app.example.com", "https://app.example.com:8443"])
def test_an_origin_not_listed_gets_no_cors_headers(cors_client, headers, origin):
    answers = [preflight(cors_client, chat_url(SESSION_ID, JID), "PATCH", origin=origin),
               cors_client.get(chat_url(SESSION_ID, JID), headers={**headers, "Origin": origin})]
    for response in answers:
        assert not [name for name in response.headers.keys() if name.startswith("Access-Control-")]


def test_a_method_the_path_does_not_take_is_not_allowed(cors_client):
    response = preflight(cors_client, chat_url(SESSION_ID, JID), "DELETE")
    assert "Access-Control-Allow-Methods" not in response.headers


def test_every_answer_to_an_allowed_origin_carries_the_headers(cors_client, make_app, headers, tokens, monkeypatch):
    origin = {"Origin": APP_ORIGIN}
    chat = chat_url(SESSION_ID, JID)
    etag = cors_client.get(chat, headers=headers).headers["ETag"]
    answers = {
        200: cors_client.get(chat, headers={**headers, **origin}),
        304: cors_client.get(chat, headers={**headers, **origin, "If-None-Match": etag}),
        401: cors_client.get(chat, headers=origin),
        403: cors_client.patch(chat, json={}, headers={"Authorization": f"Bearer {tokens['read']}", **origin}),
        404: cors_client.get(chat_url(OTHER_SESSION_ID, JID), headers={**headers, **origin}),
        405: cors_client.delete(chat, headers=origin),
        412: cors_client.patch(chat, json={}, headers={**headers, **origin, "If-Match": '"stale"'}),
        413: cors_client.patch(chat, data=b"x" * 70_000, headers={**headers, **origin}),
        422: cors_client.patch(chat, json={"pinned": "yes"}, headers={**headers, **origin}),
    }
    monkeypatch.setattr(reads, "find_chat", lambda *args: 1 / 0)
    answers[500] = cors_client.get(chat, headers={**headers, **origin})
    for status, response in answers.items():
        assert response.status_code == status
        assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN, status
        assert set(response.headers["Access-Control-Expose-Headers"].split(", ")) == EXPOSED, status
        assert "Origin" in response.headers["Vary"], status
        assert "Access-Control-Allow-Credentials" not in response.headers
    assert answers[401].get_json()["error"]["code"] == "unauthorized"


def test_gone_carries_the_headers_too(make_app, headers, orgs):
    client = make_app(CORS_ORIGINS=APP_ORIGIN, SECRET_KEY="k").test_client()
    with models.database.connection_context():
        models.Session.update(purged_seq=5).where(models.Session.id == SESSION_ID).execute()
    since = cursors.encode_since(b"k", SESSION_ID, 2)
    response = client.get(f"/api/v1/sessions/{SESSION_ID}/changes", query_string={"since": since},
                          headers={**headers, "Origin": APP_ORIGIN})
    assert response.status_code == 410 and response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


def test_star_allows_any_origin_without_credentials(make_app, headers, orgs):
    client = make_app(CORS_ORIGINS="*").test_client()
    response = client.get(chat_url(SESSION_ID), headers={**headers, "Origin": "https://anything.example"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://anything.example"
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize("origins", [APP_ORIGIN, f"{APP_ORIGIN},http://localhost:5173", "*"])
def test_a_caller_that_sends_no_origin_gets_no_cors_headers(make_app, headers, orgs, origins):
    client = make_app(CORS_ORIGINS=origins).test_client()
    for response in (client.get(chat_url(SESSION_ID), headers=headers), client.get(chat_url(SESSION_ID)),
                     client.options(chat_url(SESSION_ID))):
        assert not [name for name in response.headers.keys() if name.startswith("Access-Control-")], \
            response.headers


def test_unset_means_no_cors_headers_at_all(client, headers, orgs):
    answers = [preflight(client, chat_url(SESSION_ID), "GET"),
               client.get(chat_url(SESSION_ID), headers={**headers, "Origin": APP_ORIGIN}),
               client.get(chat_url(SESSION_ID), headers={"Origin": APP_ORIGIN})]
    for response in answers:
        assert not [name for name in response.headers.keys() if name.startswith("Access-Control-")]


@pytest.mark.parametrize("value", ["app.example.com", "https://app.example.com/", "ftp://x.example",
                                   "https://app.example.com/path"])
def test_a_value_that_is_not_an_origin_stops_start_up(make_app, value):
    from config import ConfigError
    with pytest.raises(ConfigError) as raised:
        make_app(CORS_ORIGINS=value)
    assert str(raised.value).startswith("CORS_ORIGINS: ")


def test_401_body_is_readable_with_its_challenge(cors_client):
    response = cors_client.get(chat_url(SESSION_ID), headers={"Origin": APP_ORIGIN, "Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.get_json() == error_body("unauthorized", "token is neither a login JWT nor a Chatstore API key")
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
