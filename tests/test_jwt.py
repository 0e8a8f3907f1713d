"""Login JWTs (contract §4): hostile tokens, roles and capabilities, providers' claim shapes.

The JWKS cache has its own file, test_jwks_cache.py."""
import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

import models
from conftest import SESSION_ID, add_chats, chat_url, error_body

URL = chat_url(SESSION_ID)
ACME_ADMIN = {"org_id": "acme", "org_role": "admin"}


@pytest.fixture
def chats(orgs):
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})


def get(client, token, url=URL):
    return client.get(url, headers={"Authorization": f"Bearer {token}"})


def assert_401(response, message):
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.get_json() == error_body("unauthorized", message)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header, claims, signature=b""):
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])


def fresh_claims(**claims):
    now = int(time.time())
    return {"iat": now, "exp": now + 600, **ACME_ADMIN, **claims}


class CountingServer:
    """Another server a hostile token points at; it must never be asked anything."""

    def __init__(self):
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/keys.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_valid_token_of_each_algorithm_is_accepted(client, identity_provider, chats):
    for kid in ("rsa-1", "ec-1", "ed-1"):
        response = get(client, identity_provider.mint(ACME_ADMIN, kid=kid))
        assert response.status_code == 200, (kid, response.get_json())
        assert len(response.get_json()["data"]) == 1


ISSUER, AUDIENCE, PARTY = "https://idp.example.com", "https://api.example.com", "https://app.example.com"
GOOD = {**ACME_ADMIN, "iss": ISSUER, "aud": AUDIENCE, "azp": PARTY}


def _hs256_with_public_key(provider):
    public_pem = provider.private_keys["rsa-1"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header, claims = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, fresh_claims(**GOOD)
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return signing_input + "." + b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())


def _edited_payload(provider):
    header, _, signature = provider.mint(GOOD).split(".")
    return ".".join([header, b64(json.dumps(fresh_claims(**{**GOOD, "org_id": "globex"})).encode()), signature])


def _stranger(provider, claims=GOOD, kid="rsa-1", **options):
    """Signed with a key the JWKS does not hold."""
    return provider.mint(claims, kid=kid, key=provider.stranger_key, algorithm="RS256", **options)


# Each token passes every check but the one it is named for.
HOSTILE = {
    "alg none": (lambda p, other: unsigned_token({"alg": "none", "typ": "JWT"}, fresh_claims(**GOOD)),
                 "login token algorithm 'none' is not accepted"),
    "alg none with kid": (lambda p, other: unsigned_token({"alg": "none", "kid": "rsa-1"}, fresh_claims(**GOOD)),
                          "login token algorithm 'none' is not accepted"),
    "HS256 keyed with the RSA public key": (lambda p, other: _hs256_with_public_key(p),
                                            "login token algorithm 'HS256' is not accepted"),
    "expired": (lambda p, other: p.mint(GOOD, expires_in=-3600), "login token has expired"),
    "nbf in the future": (lambda p, other: p.mint({**GOOD, "nbf": int(time.time()) + 3600}),
                          "login token is not valid yet (nbf or iat in the future)"),
    "iat in the future": (lambda p, other: p.mint({**GOOD, "iat": int(time.time()) + 3600}),
                          "login token is not valid yet (nbf or iat in the future)"),
    "no exp": (lambda p, other: p.mint({**GOOD, "exp": None}), "login token lacks the 'exp' claim"),
    "wrong iss": (lambda p, other: p.mint({**GOOD, "iss": "https://evil.example.com"}),
                  "login token issuer is not accepted"),
    "no iss": (lambda p, other: p.mint({**GOOD, "iss": None}), "login token lacks the 'iss' claim"),
    "wrong aud": (lambda p, other: p.mint({**GOOD, "aud": "https://other-api.example.com"}),
                  "login token audience is not accepted"),
    "azp not allowed": (lambda p, other: p.mint({**GOOD, "azp": "https://evil.example.com"}),
                        "login token authorized party (azp) is not accepted"),
    "unknown kid": (lambda p, other: _stranger(p, kid="made-up"), "login token is signed by an unknown key"),
    "jku pointing at another server": (
        lambda p, other: _stranger(p, kid="theirs", headers={"jku": other.url, "x5u": other.url}),
        "login token is signed by an unknown key"),
    "jwk header with the attacker's key": (
        lambda p, other: _stranger(p, headers={
            "jwk": jwt.algorithms.RSAAlgorithm.to_jwk(p.stranger_key.public_key(), as_dict=True)}),
        "login token signature is invalid"),
    "payload edited after signing": (lambda p, other: _edited_payload(p), "login token signature is invalid"),
    "signed by a key not in the JWKS": (lambda p, other: _stranger(p), "login token signature is invalid"),
    "RS256 header on the EC key": (lambda p, other: _stranger(p, kid="ec-1"),
                                   "login token algorithm 'RS256' does not match its key"),
    "no org claim": (lambda p, other: p.mint({**GOOD, "org_id": None}),
                     "login token names no organization (no active org)"),
    "empty org": (lambda p, other: p.mint({**GOOD, "org_id": ""}),
                  "login token names no organization (no active org)"),
    "org not a string": (lambda p, other: p.mint({**GOOD, "org_id": {"id": "acme"}}),
                         "login token names no organization (no active org)"),
    "not base64 inside": (lambda p, other: "eyJ!.eyJ.abc", "token is neither a login JWT nor a Chatstore API key"),
    "garbled header": (lambda p, other: "eyJhbGciOi.eyJzdWIiOiJ4In0.c2ln", "login token is malformed"),
}


@pytest.fixture
def strict_client(make_app):
    return make_app(JWT_ISSUER=ISSUER, JWT_AUDIENCE=AUDIENCE, JWT_AUTHORIZED_PARTIES=PARTY).test_client()


def test_the_good_token_of_the_hostile_table_is_accepted(strict_client, identity_provider, chats):
    assert get(strict_client, identity_provider.mint(GOOD)).status_code == 200


@pytest.fixture(scope="module")
def other_server():
    server = CountingServer()
    yield server
    server.server.shutdown()


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_tokens_are_401_saying_what_is_wrong(strict_client, identity_provider, other_server, chats, name):
    other = other_server
    other.requests = 0
    make_token, message = HOSTILE[name]
    token = make_token(identity_provider, other)
    response = get(strict_client, token)
    assert_401(response, message)
    assert token not in response.get_data(as_text=True)
    assert other.requests == 0


def test_leeway_accepts_a_just_expired_token(make_app, identity_provider, chats):
    client = make_app(JWT_LEEWAY_SECONDS="30").test_client()
    assert get(client, identity_provider.mint(ACME_ADMIN, expires_in=-10)).status_code == 200
    strict = make_app(JWT_LEEWAY_SECONDS="0").test_client()
    assert_401(get(strict, identity_provider.mint(ACME_ADMIN, expires_in=-10)), "login token has expired")


def test_aud_list_must_contain_the_audience(make_app, identity_provider, chats):
    client = make_app(JWT_AUDIENCE="https://api.example.com").test_client()
    token = identity_provider.mint({**ACME_ADMIN, "aud": ["https://x.example.com", "https://api.example.com"]})
    assert get(client, token).status_code == 200
    assert_401(get(client, identity_provider.mint(ACME_ADMIN)), "login token lacks the 'aud' claim")


def test_aud_is_ignored_when_no_audience_is_configured(client, identity_provider, chats):
    assert get(client, identity_provider.mint({**ACME_ADMIN, "aud": "anything"})).status_code == 200


def test_azp_is_checked_only_when_present(make_app, identity_provider, chats):
    client = make_app(JWT_AUTHORIZED_PARTIES="https://app.example.com, https://admin.example.com").test_client()
    assert get(client, identity_provider.mint(ACME_ADMIN)).status_code == 200
    assert get(client, identity_provider.mint({**ACME_ADMIN, "azp": "https://admin.example.com"})).status_code == 200


def test_algorithm_allow_list_follows_jwt_algorithms(make_app, identity_provider, chats):
    client = make_app(JWT_ALGORITHMS="ES256").test_client()
    assert get(client, identity_provider.mint(ACME_ADMIN, kid="ec-1")).status_code == 200
    assert_401(get(client, identity_provider.mint(ACME_ADMIN, kid="rsa-1")),
               "login token algorithm 'RS256' is not accepted")


def test_token_without_kid_needs_a_single_key(make_app, identity_provider, chats):
    token = identity_provider.mint(ACME_ADMIN, kid=None)
    assert_401(get(make_app().test_client(), token),
               "login token has no kid and the identity provider has several keys")
    identity_provider.published = ["rsa-1"]
    assert get(make_app().test_client(), token).status_code == 200


def test_unknown_role_authenticates_with_no_capabilities(client, identity_provider, chats):
    response = get(client, identity_provider.mint({"org_id": "acme", "org_role": "janitor"}))
    assert response.status_code == 403
    assert response.get_json() == error_body("forbidden", "this token lacks the 'read' capability")
    response = get(client, identity_provider.mint({"org_id": "acme"}))
    assert response.status_code == 403


def test_viewer_reads_but_cannot_patch(client, identity_provider, chats):
    token = identity_provider.mint({"org_id": "acme", "org_role": "viewer"})
    assert get(client, token).status_code == 200
    response = client.patch(chat_url(SESSION_ID, "1@s.whatsapp.net"), json={"archived": True},
                            headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.get_json() == error_body("forbidden", "this token lacks the 'send' capability")


def test_role_capabilities_come_from_the_environment(make_app, identity_provider, chats):
    client = make_app(ROLE_CAPABILITIES='{"support": ["read"]}').test_client()
    assert get(client, identity_provider.mint({"org_id": "acme", "org_role": "support"})).status_code == 200
    assert get(client, identity_provider.mint(ACME_ADMIN)).status_code == 403


def test_jwks_url_unset_refuses_jwts_but_not_api_keys(make_app, identity_provider, keys, chats):
    client = make_app(JWKS_URL="").test_client()
    assert_401(get(client, identity_provider.mint(ACME_ADMIN)),
               "login tokens are not accepted here (JWKS_URL is not configured)")
    assert get(client, keys["read"]).status_code == 200


def test_a_jwt_is_never_retried_as_an_api_key(client, identity_provider, chats, monkeypatch):
    import auth
    monkeypatch.setattr(auth, "pending_api_key", lambda token: pytest.fail("JWT tried as an API key"))
    assert_401(get(client, identity_provider.mint(ACME_ADMIN, expires_in=-3600)), "login token has expired")


# --- providers ------------------------------------------------------------------------

PROVIDERS = {
    "clerk-v2": (
        {"JWT_ORG_CLAIM": "o.id", "JWT_ROLE_CLAIM": "o.rol", "JWT_ISSUER": "https://clerk.example.com",
         "JWT_AUTHORIZED_PARTIES": "https://app.example.com"},
        {"iss": "https://clerk.example.com", "azp": "https://app.example.com", "sub": "user_2abc", "v": 2,
         "sid": "sess_2abc", "fva": [0, -1], "o": {"id": "org_2clerk", "rol": "admin", "slg": "acme"}},
        "org_2clerk"),
    "clerk-v1": (
        {"JWT_ISSUER": "https://clerk.example.com", "JWT_AUTHORIZED_PARTIES": "https://app.example.com"},
        {"iss": "https://clerk.example.com", "azp": "https://app.example.com", "sub": "user_2abc",
         "org_id": "org_2clerkv1", "org_role": "org:admin", "org_slug": "acme", "org_permissions": []},
        "org_2clerkv1"),
    "auth0": (
        {"JWT_ISSUER": "https://acme.eu.auth0.com/", "JWT_AUDIENCE": "https://chatstore.example.com/api",
         "JWT_ROLE_CLAIM": "https://chatstore.example.com/role"},
        {"iss": "https://acme.eu.auth0.com/", "sub": "auth0|abc",
         "aud": ["https://chatstore.example.com/api", "https://acme.eu.auth0.com/userinfo"],
         "org_id": "org_auth0abc", "https://chatstore.example.com/role": "member", "scope": "openid profile"},
        "org_auth0abc"),
    "workos": (
        {"JWT_ISSUER": "https://api.workos.com/user_management/client_01H", "JWT_ROLE_CLAIM": "role"},
        {"iss": "https://api.workos.com/user_management/client_01H", "sub": "user_01H", "sid": "session_01H",
         "org_id": "org_01HWORKOS", "role": "member", "permissions": []},
        "org_01HWORKOS"),
    "keycloak": (
        {"JWT_ISSUER": "https://sso.example.com/realms/acme", "JWT_AUDIENCE": "chatstore",
         "JWT_ORG_CLAIM": "organization.id", "JWT_ROLE_CLAIM": "organization.role"},
        {"iss": "https://sso.example.com/realms/acme", "aud": ["chatstore", "account"], "azp": "chatstore-web",
         "sub": "f1c5", "organization": {"id": "42c3e46f-keycloak", "role": "admin"}},
        "42c3e46f-keycloak"),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_token_shapes(app, make_app, identity_provider, provider):
    environ, claims, org_id = PROVIDERS[provider]
    with models.database.connection_context():
        models.Org.create(id=org_id, name=provider)
        models.Session.create(id=SESSION_ID, org=org_id)
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    client = make_app(**environ).test_client()
    token = identity_provider.mint(claims, kid="ec-1")
    response = get(client, token)
    assert response.status_code == 200, response.get_json()
    patched = client.patch(chat_url(SESSION_ID, "1@s.whatsapp.net"), json={"archived": True},
                           headers={"Authorization": f"Bearer {token}"})
    assert patched.status_code == 200 and patched.get_json()["archived"] is True
    other_org = identity_provider.mint({**claims, **_other_org(provider)}, kid="ec-1")
    assert get(client, other_org).get_json() == error_body("not_found", "session not found")


def _other_org(provider):
    if provider == "clerk-v2":
        return {"o": {"id": "org_someone_else", "rol": "admin"}}
    if provider == "keycloak":
        return {"organization": {"id": "someone-else", "role": "admin"}}
    return {"org_id": "org_someone_else"}


def test_a_top_level_claim_is_taken_whole_before_a_path(make_app, identity_provider, chats):
    client = make_app(JWT_ORG_CLAIM="o.id").test_client()
    token = identity_provider.mint({"o.id": "acme", "o": {"id": "globex"}, "org_role": "admin"})
    assert get(client, token).status_code == 200


def test_token_never_appears_in_the_log(make_app, identity_provider, chats, capfd):
    client = make_app().test_client()   # built here, so its log handler writes where capfd reads
    token = identity_provider.mint(ACME_ADMIN)
    get(client, token)
    get(client, token[:-4] + "AAAA")
    log = capfd.readouterr().err
    request_lines = [line for line in log.splitlines() if "chatstore.request" in line]
    assert len(request_lines) == 2 and " 200 " in request_lines[0] and " 401 " in request_lines[1]
    for part in token.split("."):
        assert part not in log


def test_the_verified_token_cache_is_bounded():
    from auth import Caller, VerifiedTokenCache
    cache = VerifiedTokenCache(max_age_seconds=300, max_entries=3)
    caller = Caller("jwt", "acme", frozenset({"read"}))
    for n in range(5):
        cache.put(f"token-{n}", caller, time.time() + 60)
    assert len(cache.entries) == 3
    assert cache.get("token-0") is None and cache.get("token-4") == caller
    cache.put("expired", caller, time.time() - 1)
    assert cache.get("expired") is None
