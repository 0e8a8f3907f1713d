"""X-Request-ID: a sane incoming id is kept, otherwise one is made; it is echoed and logged (observability/hooks.py)."""
import random
import re

SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def kept_or_made(environ):
    """The request's X-Request-ID if it is sane, else a new random one (32 hex digits).

    An id tells one request's log line from another's; it guards nothing, so it comes from the random
    module rather than the kernel: os.urandom cost a system call on every request. The random module
    reseeds itself from the kernel in every forked worker (tests/test_metrics.py holds that).
    """
    sent = environ.get("HTTP_X_REQUEST_ID")
    if sent is not None and SANE_REQUEST_ID.fullmatch(sent):  # most requests send none: no match to run
        return sent
    return random.getrandbits(128).to_bytes(16).hex()
