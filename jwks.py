"""The identity provider's signing keys: fetched from JWKS_URL, cached per process.

PyJWT's PyJWKClient refetches on every unknown `kid` with no cooldown, and in
some versions drops its cache when a fetch fails; the contract wants neither,
so this is a small cache of our own on `requests`:
- keys are kept `cache_seconds`, then refetched;
- a refetch (stale cache or unknown kid) happens at most once per
  `min_refetch_seconds`, counted from the last attempt of any cause, under a
  lock, so a flood of made-up kids is never a flood of fetches;
- a failed fetch keeps the last good keys;
- with no key ever fetched and the endpoint failing, `JwksUnavailable`.
"""
import logging
import threading
import time

import requests

from observability.metrics import JWKS_FETCHES

log = logging.getLogger("chatstore.jwks")


class JwksUnavailable(Exception):
    """No signing key was ever fetched and the JWKS endpoint is not answering."""


class JwksCache:
    def __init__(self, url, timeout_seconds, cache_seconds, min_refetch_seconds, clock=time.monotonic):
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.cache_seconds = cache_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self.clock = clock
        self.keys = None             # {kid or None: JWK dict}, once fetched
        self.fetched_at = None       # when self.keys was last fetched
        self.attempted_at = None     # last fetch attempt, failed or not
        self.lock = threading.Lock()

    def signing_key(self, kid):
        """The JWK for `kid`, or for a token without kid the only key; None when there is none."""
        keys = self._current_keys(want_kid=kid)
        if kid is None:
            return next(iter(keys.values())) if len(keys) == 1 else None
        return keys.get(kid)

    def _current_keys(self, want_kid):
        if self._fresh() and (want_kid is None or want_kid in self.keys):
            return self.keys
        with self.lock:
            # Another thread may have fetched while this one waited for the lock.
            if not (self._fresh() and (want_kid is None or want_kid in self.keys)) and self._may_fetch():
                self._fetch()
        if self.keys is None:
            raise JwksUnavailable("the identity provider's keys could not be fetched")
        return self.keys

    def _fresh(self):
        return self.keys is not None and self.clock() - self.fetched_at < self.cache_seconds

    def _may_fetch(self):
        return self.attempted_at is None or self.clock() - self.attempted_at >= self.min_refetch_seconds

    def _fetch(self):
        self.attempted_at = self.clock()
        try:
            response = requests.get(self.url, timeout=self.timeout_seconds)
            response.raise_for_status()
            keys = signing_keys(response.json())
        except (requests.RequestException, ValueError) as error:
            JWKS_FETCHES.labels("failed").inc()
            log.warning("JWKS fetch failed (%s); keeping %s cached keys", type(error).__name__,
                        "no" if self.keys is None else len(self.keys))
            return
        JWKS_FETCHES.labels("ok").inc()
        self.keys, self.fetched_at = keys, self.clock()


def signing_keys(document):
    """{kid: JWK} of the asymmetric signing keys in a JWKS document."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys = {}
    for jwk in document["keys"]:
        # Symmetric ("oct") keys and encryption keys never verify a login token.
        if isinstance(jwk, dict) and jwk.get("kty") in ("RSA", "EC", "OKP") and jwk.get("use", "sig") == "sig":
            keys[jwk.get("kid")] = jwk
    return keys
