"""The JWKS cache (contract §4): how often the identity provider's keys are fetched, and what a request gets
when the provider is slow, down or rotating its keys; verified tokens cached until they expire."""
import threading
import time

import jwt
import pytest

from conftest import error_body
from test_jwt import ACME_ADMIN, assert_401, chats, get  # noqa: F401  (chats: a fixture)


# Verified tokens are cached, so each request below that must reach the JWKS cache sends a new token.

def new_token(provider, n):
    return provider.mint({**ACME_ADMIN, "jti": str(n)})


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clocked(make_app):
    """A test client whose JWKS cache runs on a clock the test moves."""
    def build(**environ):
        app = make_app(**environ)
        clock = FakeClock()
        app.extensions["jwks"].clock = clock
        return app.test_client(), clock
    return build


def test_keys_are_cached_for_jwks_cache_seconds(clocked, identity_provider, chats):
    client, clock = clocked(JWKS_CACHE_SECONDS="300", JWKS_MIN_REFETCH_SECONDS="30")
    for n in range(5):
        assert get(client, new_token(identity_provider, n)).status_code == 200
    assert identity_provider.requests == 1
    clock.now += 299
    assert get(client, new_token(identity_provider, 5)).status_code == 200 and identity_provider.requests == 1
    clock.now += 2
    assert get(client, new_token(identity_provider, 6)).status_code == 200 and identity_provider.requests == 2


def test_100_random_kids_cause_at_most_one_fetch_per_cooldown(clocked, identity_provider, chats):
    import secrets
    client, clock = clocked(JWKS_MIN_REFETCH_SECONDS="30")
    assert get(client, identity_provider.mint(ACME_ADMIN)).status_code == 200
    assert identity_provider.requests == 1
    for _ in range(100):
        token = identity_provider.mint(ACME_ADMIN, kid=secrets.token_hex(8), key=identity_provider.stranger_key,
                                       algorithm="RS256")
        assert_401(get(client, token), "login token is signed by an unknown key")
    assert identity_provider.requests == 1
    clock.now += 30
    for _ in range(100):
        token = identity_provider.mint(ACME_ADMIN, kid=secrets.token_hex(8), key=identity_provider.stranger_key,
                                       algorithm="RS256")
        get(client, token)
    assert identity_provider.requests == 2


def test_concurrent_unknown_kids_fetch_once(make_app, identity_provider):
    from jwks import JwksCache
    cache = JwksCache(identity_provider.url, 3, 300, 30)
    barrier = threading.Barrier(20)

    def ask():
        barrier.wait()
        cache.signing_key("made-up")
    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert identity_provider.requests == 1


def test_a_rotated_in_key_is_found(clocked, identity_provider, chats):
    client, clock = clocked(JWKS_MIN_REFETCH_SECONDS="30")
    assert get(client, identity_provider.mint(ACME_ADMIN)).status_code == 200
    identity_provider.rotate_in("rsa-2")
    token = identity_provider.mint(ACME_ADMIN, kid="rsa-2")
    clock.now += 30
    assert get(client, token).status_code == 200
    assert identity_provider.requests == 2


def test_a_failed_fetch_keeps_the_cached_keys(clocked, identity_provider, chats):
    client, clock = clocked(JWKS_CACHE_SECONDS="60", JWKS_MIN_REFETCH_SECONDS="30")
    assert get(client, new_token(identity_provider, 1)).status_code == 200
    identity_provider.mode = "fail"
    clock.now += 120
    assert get(client, new_token(identity_provider, 2)).status_code == 200
    assert identity_provider.requests == 2


def test_no_key_ever_fetched_and_the_endpoint_down_is_503(client, identity_provider, chats):
    identity_provider.mode = "fail"
    response = get(client, identity_provider.mint(ACME_ADMIN))
    assert response.status_code == 503
    assert response.get_json() == error_body(
        "unavailable", "the identity provider's signing keys are unavailable; try again shortly")


def test_a_hanging_endpoint_costs_no_more_than_the_timeout(make_app, identity_provider, chats):
    client = make_app(JWKS_TIMEOUT_SECONDS="0.5").test_client()
    identity_provider.mode, identity_provider.hang_seconds = "hang", 3
    started = time.monotonic()
    response = get(client, identity_provider.mint(ACME_ADMIN))
    assert response.status_code == 503
    assert time.monotonic() - started < 1.5


def test_cached_keys_keep_working_while_the_endpoint_hangs(clocked, identity_provider, chats):
    client, clock = clocked(JWKS_TIMEOUT_SECONDS="0.5", JWKS_CACHE_SECONDS="60")
    assert get(client, new_token(identity_provider, 0)).status_code == 200
    identity_provider.mode, identity_provider.hang_seconds = "hang", 3
    clock.now += 120
    for n in range(1, 4):
        started = time.monotonic()
        assert get(client, new_token(identity_provider, n)).status_code == 200
        assert time.monotonic() - started < 1.5
    assert identity_provider.requests == 2   # one attempt; the cooldown holds off the rest


def test_a_verified_token_is_not_verified_again(client, identity_provider, chats, monkeypatch):
    import auth
    token = identity_provider.mint(ACME_ADMIN)
    assert get(client, token).status_code == 200
    monkeypatch.setattr(auth, "verified_claims", lambda *args: pytest.fail("verified twice"))
    assert get(client, token).status_code == 200
    other = identity_provider.mint({**ACME_ADMIN, "jti": "another"})
    monkeypatch.undo()
    assert get(client, other).status_code == 200


def test_a_cached_token_still_expires(make_app, identity_provider, chats, monkeypatch):
    import auth
    client = make_app(JWT_LEEWAY_SECONDS="0").test_client()
    token = identity_provider.mint(ACME_ADMIN, expires_in=2)
    assert get(client, token).status_code == 200
    later = time.time() + 3
    monkeypatch.setattr(auth.time, "time", lambda: later)
    monkeypatch.setattr(jwt.api_jwt, "datetime", _FrozenDatetime(later))
    assert_401(get(client, token), "login token has expired")


class _FrozenDatetime:
    """datetime for PyJWT's clock, frozen at a Unix time."""

    def __init__(self, timestamp):
        import datetime
        self.timestamp, self.datetime = timestamp, datetime.datetime

    def now(self, tz=None):
        return self.datetime.fromtimestamp(self.timestamp, tz)
