"""One delivery attempt: a POST to a checked address, its outcome, and nothing followed.

The host is resolved here, every address checked (push/targets.py), and the connection made to the address that
was checked, the URL's host sent as `Host` (and, for https, as the TLS server name the certificate must match).
urllib3, requests' own transport, is used directly because that is where a connection can be pinned to an
address through public parameters. Redirects are never followed; a response body is read to at most
MAX_RESPONSE_BYTES and dropped; the whole attempt has one deadline.
"""
import time
from typing import NamedTuple

import certifi
import urllib3
from urllib3.exceptions import HTTPError as TransportError
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as TransportTimeout

from push.targets import RefusedTarget, check_addresses, parse, resolve

MAX_RESPONSE_BYTES = 64 * 1024
READ_CHUNK_BYTES = 8192
GONE = 410


class Outcome(NamedTuple):
    """What an attempt came to: `outcome` is one of OUTCOMES; `status` the HTTP status, if one came back; when
    it started (epoch ms) and how long it took."""
    outcome: str
    status: int | None
    error: str | None
    at_ms: int
    duration_ms: int

    @property
    def delivered(self):
        return self.outcome == "delivered"


# The outcomes /metrics counts attempts by.
OUTCOMES = ("delivered", "gone", "http_error", "timeout", "connection_error", "refused_target")


def post(url, body, headers, timeout_seconds, allow_private):
    """POST the body to the URL (once); the Outcome. Never raises for anything the receiver or network does."""
    started, at_ms = time.monotonic(), int(time.time() * 1000)

    def outcome(kind, status=None, error=None):
        return Outcome(kind, status, error, at_ms, int((time.monotonic() - started) * 1000))

    try:
        target = parse(url)
        addresses = resolve(target)
        check_addresses(addresses, allow_private)
    except RefusedTarget as error:
        return outcome("refused_target", error=f"the target {error}")
    except (OSError, UnicodeError) as error:
        return outcome("connection_error", error=f"the host does not resolve ({type(error).__name__})")
    response, failure = None, None
    for address in addresses:  # in the resolver's order, as a connect would: localhost may be ::1, then 127.0.0.1
        try:
            response = _post_to(target, address, body, headers, timeout_seconds, started)
            break
        except NewConnectionError as error:  # urllib3 counts it a connect timeout: refused or unreachable
            failure = outcome("connection_error", error=f"connection failed ({type(error).__name__})")
        except (TransportTimeout, TimeoutError):
            return outcome("timeout", error=f"no answer within {timeout_seconds:g} s")
        except (TransportError, OSError) as error:
            return outcome("connection_error", error=f"connection failed ({type(error).__name__})")
    if response is None:
        return failure
    if 200 <= response.status < 300:
        return outcome("delivered", response.status)
    if response.status == GONE:
        return outcome("gone", response.status, "the endpoint answered 410 Gone")
    if 300 <= response.status < 400:
        return outcome("http_error", response.status, f"answered {response.status}: redirects are not followed")
    return outcome("http_error", response.status, f"answered {response.status}")


def _post_to(target, address, body, headers, timeout_seconds, started):
    """POST to one address; its response, the body read to at most MAX_RESPONSE_BYTES by the deadline."""
    pool = _pool(target, address, timeout_seconds)
    try:
        response = pool.urlopen("POST", target.path, body=body, headers={**headers, "Host": target.host_header},
                                redirect=False, retries=False, assert_same_host=False, preload_content=False)
        try:
            _drain(response, started + timeout_seconds)
        finally:
            response.release_conn()
        return response
    finally:
        pool.close()


def _pool(target, address, timeout_seconds):
    timeout = urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds, total=timeout_seconds)
    if target.scheme == "http":
        return urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False, maxsize=1)
    return urllib3.HTTPSConnectionPool(address, target.port, timeout=timeout, retries=False, maxsize=1,
                                       cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(),
                                       server_hostname=target.host, assert_hostname=target.host)


def _drain(response, deadline):
    """Read at most MAX_RESPONSE_BYTES of the body, by the deadline; the rest is never read."""
    read = 0
    while read < MAX_RESPONSE_BYTES:
        if time.monotonic() > deadline:
            raise TimeoutError
        chunk = response.read(min(READ_CHUNK_BYTES, MAX_RESPONSE_BYTES - read))
        if not chunk:
            return
        read += len(chunk)
