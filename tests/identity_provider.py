"""A stand-in identity provider for the tests: a real JWKS server on loopback, and token minting.

The server counts its requests and can be told to fail (HTTP 500) or hang
(answer after a delay longer than any timeout the tests set).
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ALGORITHMS = {"rsa-1": "RS256", "ec-1": "ES256", "ed-1": "EdDSA"}


def new_private_key(kid):
    if kid.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kid.startswith("ec"):
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(kid, private_key):
    algorithm = jwt.get_algorithm_by_name(ALGORITHMS.get(kid, "RS256" if kid.startswith("rsa") else
                                                         "ES256" if kid.startswith("ec") else "EdDSA"))
    jwk = algorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


class IdentityProvider:
    def __init__(self):
        self.private_keys = {kid: new_private_key(kid) for kid in ALGORITHMS}
        self.stranger_key = new_private_key("rsa-stranger")   # never published
        self.requests = 0
        self.mode = "ok"
        self.published = list(ALGORITHMS)
        self.hang_seconds = 5
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                provider.requests += 1
                if provider.mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                if provider.mode == "hang":
                    time.sleep(provider.hang_seconds)
                body = json.dumps(provider.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def jwks(self):
        return {"keys": [public_jwk(kid, self.private_keys[kid]) for kid in self.published]}

    def reset(self):
        self.requests, self.mode, self.published = 0, "ok", list(ALGORITHMS)

    def rotate_in(self, kid):
        """Publish a new key, as a provider does when it rotates."""
        self.private_keys[kid] = new_private_key(kid)
        self.published.append(kid)

    def mint(self, claims, kid="rsa-1", algorithm=None, headers=None, expires_in=600, key=None):
        """A signed token: exp defaults to 10 minutes ahead; `kid=None` leaves the kid out."""
        now = int(time.time())
        payload = {"sub": "user_1", "iat": now, "exp": now + expires_in, **claims}
        payload = {name: value for name, value in payload.items() if value is not None}
        header = dict(headers or {})
        if kid is not None:
            header["kid"] = kid
        signing_key = key or self.private_keys.get(kid or "rsa-1")
        return jwt.encode(payload, signing_key, algorithm=algorithm or ALGORITHMS.get(kid or "rsa-1", "RS256"),
                          headers=header)

    def stop(self):
        self.server.shutdown()
