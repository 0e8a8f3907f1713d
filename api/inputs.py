"""What the API views take from a request: the session id, a JSON body, a query, the signing key.

Shared by every blueprint, so all read input the same way
and refuse it with the same errors.
"""
import functools
import json
import re

from flask import current_app, request
from marshmallow import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

import models
from api.cursors import CursorError, decode_cursor, decode_since, encode_cursor
from errors import not_found, validation_error
from schemas import is_ulid
from store import feed

SESSION_NOT_FOUND = "session not found"


def session_id_or_404(sid):
    """A ULID, uppercased as stored; anything else is simply not found."""
    sid = sid.upper()
    if not is_ulid(sid):
        raise not_found(SESSION_NOT_FOUND)
    return sid


def load_or_422(schema, data):
    """schema.load(data) (or schema(data), for a loading function), with marshmallow's errors as a 422."""
    try:
        return schema.load(data) if hasattr(schema, "load") else schema(data)
    except ValidationError as error:
        raise validation_error(error.normalized_messages()) from None


def query_or_422(schema):
    """The query string loaded by schema (422 when bad). No query at all is the schema's defaults, loaded
    once: the first page, the one a frontend polls, is asked for with none, and loading costs ~15 µs."""
    current = request._get_current_object()  # one proxy lookup, not two (observability/hooks.py)
    if not current.query_string:
        return dict(_defaults(schema))
    return load_or_422(schema, single_valued(current.args, schema))


@functools.cache
def _defaults(schema):
    return schema.load({})


def single_valued(args, schema):
    """The query as a dict; a parameter of ours given twice is ambiguous, so it is a 422."""
    repeated = sorted(name for name in schema.fields if len(args.getlist(name)) > 1)
    if repeated:
        raise validation_error({name: ["given more than once"] for name in repeated})
    return args.to_dict()


def json_object_body(max_bytes=None):
    """The body as a JSON object, whatever the Content-Type says; over max_bytes is a 413."""
    if max_bytes is not None:
        request.max_content_length = max_bytes
    limit = request.max_content_length
    raw = request.get_data(cache=False)  # werkzeug answers 413 for a declared length over the limit
    if request.content_length is None and len(raw) >= limit and request.environ["wsgi.input"].read(1):
        # A chunked body has no declared length: werkzeug stops reading at the
        # limit and would hand over a truncated body, so look for one byte more.
        raise RequestEntityTooLarge()
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError):
        raise validation_error({"body": ["must be a JSON object"]}, "body is not valid JSON") from None
    except RecursionError:
        raise validation_error({"body": ["is nested too deeply"]}, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise validation_error({"body": ["must be a JSON object"]}, "body must be a JSON object")
    return body


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def signing_key():
    """The key of cursors and since tokens: SECRET_KEY, or the key init-db stored, read once per process."""
    key = current_app.config.get("CURSOR_KEY")
    if key is None:
        key = current_app.config["CHATSTORE"].secret_key or models.load_cursor_secret()
        if key is None:
            raise RuntimeError("no cursor key: set SECRET_KEY or run `flask --app app init-db`")
        key = current_app.config["CURSOR_KEY"] = key.encode()
    return key


def since_position(session_id, since):
    """The change-order position a `since` token stands for (the start without one); 422 naming `since` for a
    token this server did not issue for this session's changes. The feed and a webhook's replay take it alike."""
    if not since:
        return feed.START
    try:
        return decode_since(signing_key(), session_id, since)
    except CursorError as error:
        raise validation_error({"since": [str(error)]}) from None


def listing_cursor(scope, position):
    """The next page's cursor of an admin listing (keys, webhooks, attempts): the last row's id, signed over
    the listing's scope, so no other cursor passes for one."""
    return encode_cursor(signing_key(), scope, position, {})


def listing_page(scope, limit, rows, schema):
    """An admin listing's answer: up to `limit` of `rows` (read one beyond it, so whether more follow is known
    without another read), dumped with `schema`, and the next page's cursor or null."""
    page = rows[:limit]
    next_cursor = listing_cursor(scope, page[-1]["id"]) if len(rows) > limit else None
    return {"data": schema.dump(page, many=True), "nextCursor": next_cursor}


def listing_position(scope, cursor):
    """The row id an admin listing's cursor stands for, None without one; 422 naming `cursor` otherwise."""
    if not cursor:
        return None
    try:
        position, _ = decode_cursor(signing_key(), scope, cursor)
    except CursorError as error:
        raise validation_error({"cursor": [str(error)]}) from None
    if type(position) is not int or position < 1:
        raise validation_error({"cursor": ["cursor was not issued by this server for this listing"]})
    return position


# The largest row id (a 64-bit integer); a longer number is simply not found.
MAX_ROW_ID = 2 ** 63 - 1
ROW_ID = re.compile(r"[0-9]{1,19}")


def row_id_or_404(text, message):
    """An id in a path (an API key's, a webhook's) as the row id it names; anything else (not ASCII digits, such
    as `¹`, which str.isdigit accepts, or too large) is simply not found."""
    if ROW_ID.fullmatch(text) is None or int(text) > MAX_ROW_ID:
        raise not_found(message)
    return int(text)
