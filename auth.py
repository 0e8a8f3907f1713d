"""Bearer token -> caller (org, capabilities, kind), and the `requires` guard.

The token's shape picks its one verifier: `csk_…` is an API key, three
base64url parts joined by `.` are a login JWT. A token is never retried with
the other verifier (RFC 8725 §3.12). Each resolver returns a Caller or raises
ApiError(401).
"""
import datetime
import functools
import hashlib
import re
import secrets
import threading
import time
import zlib
from time import time as seconds_since_epoch
from typing import NamedTuple

import jwt
from flask import current_app, g, request

import models
from errors import ApiError
from jwks import JwksUnavailable
from store.reads import Owner, find_api_key

API_KEY_PREFIX = "csk_"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BASE62_DIGIT_VALUES = {digit: value for value, digit in enumerate(BASE62)}
API_KEY_BODY_LENGTH = 43   # 32 random bytes in base62
API_KEY_CHECKSUM_LENGTH = 6
API_KEY_PATTERN = re.compile(
    API_KEY_PREFIX + f"[0-9A-Za-z]{{{API_KEY_BODY_LENGTH + API_KEY_CHECKSUM_LENGTH}}}")
JWT_PATTERN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
LAST_USED_INTERVAL = datetime.timedelta(minutes=1)
LAST_USED_INTERVAL_SECONDS = LAST_USED_INTERVAL.total_seconds()
UNIX_EPOCH = datetime.datetime(1970, 1, 1)  # stored times are naive UTC


class Caller(NamedTuple):
    """Who is calling (a tuple: one is made on every request, and a tuple is the cheapest to make)."""
    kind: str                     # "api_key" or "jwt"
    org_id: str | None            # None for an API key not looked up yet (see accept_key)
    capabilities: frozenset
    key_digest: str | None = None

    @property
    def pending(self):
        return self.org_id is None


def unauthorized(message, token_present=True):
    challenge = 'Bearer error="invalid_token"' if token_present else "Bearer"
    return ApiError(401, message, headers={"WWW-Authenticate": challenge})


# --- API keys ---------------------------------------------------------------------

def _base62(number, width):
    digits = []
    while number:
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits)).rjust(width, "0")


def _checksum(text):
    return _base62(zlib.crc32(text.encode("ascii")), API_KEY_CHECKSUM_LENGTH)


def _base62_value(digits):
    value = 0
    for digit in digits:
        value = value * 62 + BASE62_DIGIT_VALUES[digit]
    return value


def new_api_key():
    """A fresh key: prefix, 32 random bytes in base62, and a checksum of both."""
    body = API_KEY_PREFIX + _base62(int.from_bytes(secrets.token_bytes(32), "big"), API_KEY_BODY_LENGTH)
    return body + _checksum(body)


def api_key_digest(key):
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def is_well_formed_api_key(token):
    """Shape and checksum: a mistyped or made-up key fails here, with no query.

    The sent checksum is read as a number and compared with the body's CRC-32, rather than the CRC written out in
    base62 and compared as text: the same test (a base62 text of that width names one number), in half the time
    of a key's whole check, which every request with a key pays. Both are numbers below 2**32, so the comparison
    takes the same time whatever they are."""
    if not API_KEY_PATTERN.fullmatch(token):
        return False
    body, checksum = token[:-API_KEY_CHECKSUM_LENGTH], token[-API_KEY_CHECKSUM_LENGTH:]
    return zlib.crc32(body.encode("ascii")) == _base62_value(checksum)


def pending_api_key(token):
    """A well-formed key, to be looked up with the request's first read (store/reads.py); malformed ones stop
    here."""
    if not is_well_formed_api_key(token):
        raise unauthorized("API key is malformed (bad length, characters or checksum)")
    return Caller("api_key", None, frozenset(), key_digest=api_key_digest(token))


def accept_key(row, capability, state):
    """The caller a looked-up key row makes (401 unknown or revoked, 403 without the capability), kept in the
    request's `state` (g) even when refused, so the request's log line names its org; its use recorded."""
    if row is None or row["key_id"] is None:
        raise unauthorized("unknown API key")
    if row["key_revoked"]:
        raise unauthorized("API key has been revoked")
    if row["key_expired"]:
        raise unauthorized("API key has expired")
    if last_use_is_stale(row["key_last_used_at"]):
        models.touch_api_key(row["key_id"], models.now_utc(), LAST_USED_INTERVAL)
    caller = state.caller = Caller("api_key", row["key_org_id"], _capability_set(row["key_capabilities"]))
    if capability not in caller.capabilities:
        raise forbidden(capability)
    return caller


@functools.lru_cache(maxsize=16)
def _capability_set(stored):
    """A key's stored capabilities ("read,send") as a set; the texts are a handful, each read many times."""
    return frozenset(filter(None, stored.split(",")))


def last_use_is_stale(last_used_at):
    """Whether the key's last use is unrecorded or over a minute old.

    Compared as seconds since the epoch: the naive UTC "now" that models store cost a GET of one chat 1.5%
    to make (datetime.replace is slow), and it is needed only when a use is recorded, once a minute.
    """
    if last_used_at is None:
        return True
    return _seconds_since_epoch(last_used_at) < seconds_since_epoch() - LAST_USED_INTERVAL_SECONDS


@functools.lru_cache(maxsize=256)
def _seconds_since_epoch(stored_time):
    """A stored naive UTC time (text from SQLite, a datetime from PostgreSQL) in seconds since the epoch. A key's
    last use stays the same for a minute, read by every request with that key, so each is converted once."""
    if isinstance(stored_time, str):
        stored_time = datetime.datetime.fromisoformat(stored_time)
    return (stored_time - UNIX_EPOCH).total_seconds()


# --- login JWTs -------------------------------------------------------------------

# PyJWT's exceptions, as the message a 401 gives; the first match wins.
JWT_ERROR_MESSAGES = [
    (jwt.ExpiredSignatureError, "login token has expired"),
    (jwt.ImmatureSignatureError, "login token is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidIssuerError, "login token issuer is not accepted"),
    (jwt.InvalidAudienceError, "login token audience is not accepted"),
    (jwt.InvalidSignatureError, "login token signature is invalid"),
    (jwt.DecodeError, "login token is malformed"),
]


class VerifiedTokenCache:
    """Callers of recently verified JWTs, by the token's SHA-256, each kept no later than its `exp`.

    A polling frontend sends the same token many times a minute; this spares
    the signature check (the costliest step) on all but the first. Entries also
    end after the JWKS cache period, so a key the provider withdraws stops
    counting within that time.
    """

    def __init__(self, max_age_seconds, max_entries=10_000):
        self.max_age_seconds = max_age_seconds
        self.max_entries = max_entries
        self.entries = {}
        # Threaded workers share the cache; evicting while another thread inserts needs a lock.
        self.lock = threading.Lock()

    def get(self, token):
        entry = self.entries.get(hashlib.sha256(token.encode()).digest())
        if entry is not None and entry[1] > time.time():
            return entry[0]
        return None

    def put(self, token, caller, expires_at):
        keep_until = min(expires_at, time.time() + self.max_age_seconds)
        with self.lock:
            if len(self.entries) >= self.max_entries:
                self.entries.pop(next(iter(self.entries)), None)  # the oldest entry
            self.entries[hashlib.sha256(token.encode()).digest()] = (caller, keep_until)


def resolve_jwt(token):
    verified = current_app._get_current_object().extensions.get("verified_tokens")
    caller = verified.get(token) if verified is not None else None
    if caller is None:
        caller, expires_at = verify_jwt(token)
        verified.put(token, caller, expires_at)
    return caller


def verify_jwt(token):
    """The caller a login JWT names once every check passes, and when the token expires."""
    config = current_app.config["CHATSTORE"]
    keys = current_app.extensions.get("jwks")
    if keys is None:
        raise unauthorized("login tokens are not accepted here (JWKS_URL is not configured)")
    claims = verified_claims(token, keys, config)
    org_id = claim(claims, config.jwt_org_claim)
    if not isinstance(org_id, str) or not org_id:
        raise unauthorized("login token names no organization (no active org)")
    role = claim(claims, config.jwt_role_claim)
    capabilities = config.role_capabilities.get(role, ()) if isinstance(role, str) else ()
    return Caller("jwt", org_id, frozenset(capabilities)), claims["exp"]


def verified_claims(token, keys, config):
    """The token's claims once its signature and time, issuer, audience and azp checks pass."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise unauthorized("login token is malformed") from None
    algorithm = header.get("alg")
    if algorithm not in config.jwt_algorithms:
        raise unauthorized(f"login token algorithm {algorithm!r} is not accepted")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise unauthorized("login token is malformed")
    # Only keys from JWKS_URL: the header's jku, x5u, jwk and x5c are never looked at.
    try:
        jwk = keys.signing_key(kid)
    except JwksUnavailable:
        raise ApiError(503, "the identity provider's signing keys are unavailable; try again shortly") from None
    if jwk is None:
        raise unauthorized("login token is signed by an unknown key" if kid is not None else
                           "login token has no kid and the identity provider has several keys")
    if jwk.get("alg", algorithm) != algorithm:
        raise unauthorized(f"login token algorithm {algorithm!r} does not match its key")
    try:
        key = jwt.PyJWK(jwk, algorithm=algorithm)
        claims = jwt.decode(
            token, key, algorithms=[algorithm], issuer=config.jwt_issuer, audience=config.jwt_audience,
            leeway=config.jwt_leeway_seconds,
            options={"require": ["exp"], "verify_aud": config.jwt_audience is not None})
    except jwt.MissingRequiredClaimError as error:
        raise unauthorized(f"login token lacks the {error.claim!r} claim") from None
    except (jwt.PyJWKError, jwt.InvalidKeyError):
        raise unauthorized(f"login token algorithm {algorithm!r} does not match its key") from None
    except jwt.InvalidTokenError as error:
        raise unauthorized(jwt_error_message(error)) from None
    if config.jwt_authorized_parties and "azp" in claims and claims["azp"] not in config.jwt_authorized_parties:
        raise unauthorized("login token authorized party (azp) is not accepted")
    return claims


def jwt_error_message(error):
    for kind, message in JWT_ERROR_MESSAGES:
        if isinstance(error, kind):
            return message
    return "login token is invalid"


def claim(claims, name):
    """A claim by name; a name that is not a top-level key is a `.` path into nested objects."""
    if name in claims:
        return claims[name]
    value = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


# --- the router -------------------------------------------------------------------

def bearer_token():
    # What request.headers reads, without its lookup; the proxy's object taken directly (see observability/hooks.py).
    header = request._get_current_object().environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.strip().partition(" ")
    if not header.strip():
        raise unauthorized("missing Authorization header; send Authorization: Bearer <token>",
                           token_present=False)
    if scheme.lower() != "bearer":
        raise unauthorized("unsupported authorization scheme; send Authorization: Bearer <token>",
                           token_present=False)
    token = token.strip()
    if not token:
        raise unauthorized("empty bearer token", token_present=False)
    return token


def authenticate():
    token = bearer_token()
    if token.startswith(API_KEY_PREFIX):
        return pending_api_key(token)
    if JWT_PATTERN.fullmatch(token):
        return resolve_jwt(token)
    raise unauthorized("token is neither a login JWT nor a Chatstore API key")


def forbidden(capability):
    return ApiError(403, f"this token lacks the {capability!r} capability")


def requires(capability, key_first=False):
    """Authenticate and check the capability, before the view looks anything up; settle an API key after it.

    A login JWT is checked here. An API key is looked up by the view's first
    read, in the same statement as the data (store/reads.py), whose SQL itself
    only reaches a session for a live key holding the capability; the read
    hands the key's row to the request's Owner. Here, after the view, whatever
    it answered or raised, the key is settled from that row (or looked up, if
    the view read nothing), so its 401 or 403 comes before any 404 or 422.
    `key_first` settles a key before the view instead: for views that need the
    caller's org and read no session (the org's own resources).
    """
    def decorator(view):
        @functools.wraps(view)
        def guarded(*args, **kwargs):
            caller, state = authenticate(), g._get_current_object()  # g looked up once: each lookup costs
            state.caller = caller
            if caller.pending:
                state.owner = Owner(key_digest=caller.key_digest, capability=capability, now_ms=now_ms())
                if key_first:
                    settle_key(state, capability)
                    state.owner = Owner(org_id=state.caller.org_id)
            else:
                if capability not in caller.capabilities:
                    raise forbidden(capability)
                state.owner = Owner(org_id=caller.org_id)
            try:
                response = view(*args, **kwargs)
            except ApiError:
                settle_key(state, capability)
                raise
            settle_key(state, capability)
            return response
        return guarded
    return decorator


def current_owner():
    """Whose sessions this request's reads may see (store.reads.Owner), made by `requires`."""
    return g._get_current_object().owner


def current_org():
    """The org of the request's caller, settled (a view under `requires(..., key_first=True)` or a JWT)."""
    return g._get_current_object().caller.org_id


def settle_key(state, capability):
    """An API key's 401 or 403, from the row a read found, or looked up when no read did; its use recorded.
    A JWT, and a key settled already, pass."""
    if not state.caller.pending:
        return
    owner = state.owner
    row = owner.key_row if owner.key_read else find_api_key(owner.key_digest, owner.now_ms)
    accept_key(row, capability, state)


def now_ms():
    return int(seconds_since_epoch() * 1000)
