"""Opaque, signed list cursors.

A cursor carries the keyset position after a page's last chat and the filters
of that listing, signed with an HMAC over them and the session id, so a cursor
the server did not issue (garbled, truncated, edited, from another session) is
refused instead of being trusted.
"""
import base64
import binascii
import hashlib
import hmac
import json

MAC_BYTES = 16


class CursorError(ValueError):
    pass


def _b64encode(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key, session_id, payload):
    message = session_id.encode() + b"\n" + payload.encode("ascii")
    return hmac.new(key, message, hashlib.sha256).digest()[:MAC_BYTES]


def encode_cursor(key, session_id, position, filters):
    """position is [pinned, sort_at, id] (a list cursor); filters the listing's {name: value}."""
    body = json.dumps([position, filters], separators=(",", ":"), sort_keys=True)
    payload = _b64encode(body.encode())
    return payload + "." + _b64encode(_mac(key, session_id, payload))


def decode_cursor(key, session_id, cursor):
    """Return (position, filters) of a cursor this server issued, or raise CursorError."""
    payload, _, mac = cursor.partition(".")
    try:
        if not payload.isascii() or not hmac.compare_digest(_b64decode(mac), _mac(key, session_id, payload)):
            raise CursorError("cursor was not issued by this server for this listing")
        position, filters = json.loads(_b64decode(payload))
    except (binascii.Error, ValueError, TypeError):
        raise CursorError("cursor was not issued by this server for this listing") from None
    return position, filters


# A `since` token of the changes feed is signed the same way, over a scope of
# its own, so a list cursor can't pass for one (nor one for a cursor).
def _since_scope(session_id):
    return session_id + "/changes"


def encode_since(key, session_id, position):
    """A changes token for a position in the session's change order."""
    return encode_cursor(key, _since_scope(session_id), position, {})


def decode_since(key, session_id, token):
    """The position of a token this server issued for this session's feed, or raise CursorError."""
    try:
        position, _ = decode_cursor(key, _since_scope(session_id), token)
    except CursorError:
        raise CursorError("since was not issued by this server for this session's changes") from None
    if type(position) is not int or position < 0:
        raise CursorError("since was not issued by this server for this session's changes")
    return position
