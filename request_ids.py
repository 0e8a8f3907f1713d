"""X-Request-ID: a sane incoming id is kept, otherwise one is made; it is echoed and logged (request_hooks)."""
import os
import re

SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def kept_or_made(environ):
    """The request's X-Request-ID if it is sane, else a new random one (32 hex digits)."""
    sent = environ.get("HTTP_X_REQUEST_ID", "")
    return sent if SANE_REQUEST_ID.fullmatch(sent) else os.urandom(16).hex()  # secrets.token_hex, three calls shorter
