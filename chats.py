"""The chats blueprint: three thin views, each auth -> schema -> model -> schema."""
import json

from flask import Blueprint, current_app, g, request
from marshmallow import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

import models
from auth import requires
from cursors import CursorError, decode_cursor, encode_cursor
from errors import ApiError, not_found, validation_error
from schemas import (ChatListQuerySchema, ChatPatchSchema, ChatSchema, chat_changes, chat_type,
                     compiled_dumper, is_ulid)

bp = Blueprint("chats", __name__, url_prefix="/api/v1/sessions/<sid>/chats")
dump_chat = compiled_dumper(ChatSchema())
patch_schema = ChatPatchSchema()
list_query_schema = ChatListQuerySchema()
SESSION_NOT_FOUND = "session not found"
CHAT_NOT_FOUND = "chat not found"


@bp.before_request
def connect_database():
    """Only the chat routes touch the database; /healthz never does."""
    models.database.connect()


def session_id_or_404(sid):
    """A ULID, uppercased as stored; anything else is simply not found."""
    sid = sid.upper()
    if not is_ulid(sid):
        raise not_found(SESSION_NOT_FOUND)
    return sid


def stored_chat_or_404(sid, cid):
    session_id = session_id_or_404(sid)
    session_found, chat = models.find_chat(session_id, g.caller.org_id, cid)
    if not session_found:
        raise not_found(SESSION_NOT_FOUND)
    if chat is None or chat_type(cid) is None:
        raise not_found(CHAT_NOT_FOUND)
    return chat


@bp.get("/<path:cid>")
@requires("read")
def get_chat(sid, cid):
    """One stored chat."""
    return dump_chat(stored_chat_or_404(sid, cid))


@bp.get("")
@requires("read")
def list_chats(sid):
    """A page of the session's chats in display order."""
    session_id = session_id_or_404(sid)
    try:
        query = load_or_422(list_query_schema, single_valued(request.args))
        filters, after = page_position(session_id, query)
    except ApiError:
        # 404 comes before 422: a bad query on a session that isn't the caller's is not found.
        # Checked only here, so a good query costs the one page query alone.
        if not models.session_is_owned(session_id, g.caller.org_id):
            raise not_found(SESSION_NOT_FOUND) from None
        raise
    rows = models.list_chats(session_id, g.caller.org_id, filters, after, query["limit"] + 1)
    if rows is None:
        raise not_found(SESSION_NOT_FOUND)
    page, more = rows[:query["limit"]], len(rows) > query["limit"]
    next_cursor = None
    if more:
        next_cursor = encode_cursor(cursor_key(), session_id, models.display_position(page[-1]), filters)
    return {"data": [dump_chat(chat) for chat in page], "nextCursor": next_cursor}


@bp.patch("/<path:cid>")
@requires("send")
def patch_chat(sid, cid):
    """Change a chat's archive, pin and mute state; only the fields sent."""
    chat = stored_chat_or_404(sid, cid)
    patch = load_or_422(patch_schema, json_object_body())
    try:
        updated = models.update_chat(chat["id"], chat["session"], chat_changes(patch),
                                     current_app.config["CHATSTORE"].max_pinned_chats)
    except models.ChatRuleError as error:
        raise validation_error({error.field_name: [error.message]}, error.message) from None
    return dump_chat(updated)


def load_or_422(schema, data):
    try:
        return schema.load(data)
    except ValidationError as error:
        raise validation_error(error.normalized_messages(),
                               "invalid " + ", ".join(sorted(error.normalized_messages()))) from None


def single_valued(args):
    """The query as a dict; a parameter of ours given twice is ambiguous, so it is a 422."""
    repeated = sorted(name for name in list_query_schema.fields if len(args.getlist(name)) > 1)
    if repeated:
        raise validation_error({name: ["given more than once"] for name in repeated},
                               "invalid " + ", ".join(repeated))
    return args.to_dict()


def json_object_body():
    """The body as a JSON object, whatever the Content-Type says."""
    raw = request.get_data(cache=False)  # werkzeug answers 413 for a declared length over the limit
    if request.content_length is None and len(raw) >= current_app.config["MAX_CONTENT_LENGTH"] \
            and request.environ["wsgi.input"].read(1):
        # A chunked body has no declared length: werkzeug stops reading at the
        # limit and would hand over a truncated body, so look for one byte more.
        raise RequestEntityTooLarge()
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError):
        raise validation_error({"body": ["must be a JSON object"]}, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise validation_error({"body": ["must be a JSON object"]}, "body must be a JSON object")
    return body


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def page_position(session_id, query):
    """The filters and keyset position of this page: the query's, or the cursor's."""
    filters = {name: query[name] for name in ChatListQuerySchema.FILTERS if name in query}
    if not query.get("cursor"):
        return filters, None
    try:
        position, cursor_filters = decode_cursor(cursor_key(), session_id, query["cursor"])
    except CursorError as error:
        raise validation_error({"cursor": [str(error)]}, "invalid cursor") from None
    if any(cursor_filters.get(name) != value for name, value in filters.items()):
        raise validation_error({"cursor": ["filters differ from those the cursor was issued for"]},
                               "invalid cursor")
    return cursor_filters, position


def cursor_key():
    """SECRET_KEY, or the key init-db stored, read once per process."""
    key = current_app.config.get("CURSOR_KEY")
    if key is None:
        key = current_app.config["CHATSTORE"].secret_key or models.load_cursor_secret()
        if key is None:
            raise RuntimeError("no cursor key: set SECRET_KEY or run `flask --app app init-db`")
        key = current_app.config["CURSOR_KEY"] = key.encode()
    return key
