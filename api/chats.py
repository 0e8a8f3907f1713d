"""The chats blueprint: three thin views, each auth -> schema -> model -> schema."""
from flask import Blueprint, current_app

from api.conditional import check_if_match, if_match_guard, json_response
from api.cursors import CursorError, decode_cursor, encode_cursor
from api.inputs import (SESSION_NOT_FOUND, json_object_body, load_or_422, query_or_422, session_id_or_404,
                        signing_key)
from auth import current_owner, requires
from errors import ApiError, not_found, validation_error
from schemas import (ChatListQuerySchema, ChatPatchSchema, ChatSchema, chat_changes, chat_type, compiled_dumper,
                     dump_chat)
from store import pages, reads, writes

bp = Blueprint("chats", __name__, url_prefix="/api/v1/sessions/<sid>/chats")
dump_page_row = compiled_dumper(ChatSchema(), pages.ROW_COLUMNS)
patch_schema = ChatPatchSchema()
list_query_schema = ChatListQuerySchema()
CHAT_NOT_FOUND = "chat not found"


def owned_session_or_404(session_id):
    """404 unless the session is the caller's: one read, which also finds an API key's row (its 401 or 403
    comes first: `requires`)."""
    head = reads.session_state(current_owner(), session_id)
    if head is None or head["owned_session"] is None:  # no head: an unknown key, settled as 401 by `requires`
        raise not_found(SESSION_NOT_FOUND)


def stored_chat_or_404(sid, cid):
    session_id = session_id_or_404(sid)
    found = reads.find_chat(current_owner(), session_id, cid)
    if not found.session_owned:
        raise not_found(SESSION_NOT_FOUND)
    if not found.rows or chat_type(cid) is None:
        raise not_found(CHAT_NOT_FOUND)
    return found.rows[0]


@bp.get("/<path:cid>")
@requires("read")
def get_chat(sid, cid):
    """One stored chat."""
    return json_response(dump_chat(stored_chat_or_404(sid, cid)))


@bp.get("")
@requires("read")
def list_chats(sid):
    """A page of the session's chats in display order."""
    session_id = session_id_or_404(sid)
    try:
        query = query_or_422(list_query_schema)
        filters, after = page_position(session_id, query)
    except ApiError:
        # 404 comes before 422: a bad query on a session that isn't the caller's is not found.
        # Checked only here, so a good query costs the one page read alone.
        owned_session_or_404(session_id)
        raise
    found = pages.list_chats(current_owner(), session_id, filters, after, query["limit"] + 1)
    if not found.session_owned:
        raise not_found(SESSION_NOT_FOUND)
    page, more = found.rows[:query["limit"]], len(found.rows) > query["limit"]
    next_cursor = None
    if more:
        next_cursor = encode_cursor(signing_key(), session_id, pages.row_position(page[-1]), filters)
    return json_response({"data": [dump_page_row(row) for row in page], "nextCursor": next_cursor})


@bp.patch("/<path:cid>")
@requires("send")
def patch_chat(sid, cid):
    """Change a chat's archive, pin and mute state; only the fields sent."""
    chat = stored_chat_or_404(sid, cid)
    check_if_match(dump_chat(chat))  # a stale If-Match is refused before the body is read
    changes = chat_changes(load_or_422(patch_schema, json_object_body()))
    if not changes:
        return json_response(dump_chat(chat), conditional=False)  # nothing written, no new change position
    try:
        updated = writes.update_chat(chat["id"], chat["session"], changes,
                                     current_app.config["CHATSTORE"].max_pinned_chats,
                                     expected=if_match_guard(dump_chat))
    except writes.ChatRuleError as error:
        raise validation_error({error.field_name: [error.message]}, error.message) from None
    except writes.ChatGone:
        raise not_found(CHAT_NOT_FOUND) from None
    return json_response(dump_chat(updated), conditional=False)


def page_position(session_id, query):
    """The filters and keyset position of this page: the query's, or the cursor's."""
    filters = {name: query[name] for name in ChatListQuerySchema.FILTERS if name in query}
    if not query.get("cursor"):
        return filters, None
    try:
        position, cursor_filters = decode_cursor(signing_key(), session_id, query["cursor"])
    except CursorError as error:
        raise validation_error({"cursor": [str(error)]}) from None
    if any(cursor_filters.get(name) != value for name, value in filters.items()):
        raise validation_error({"cursor": ["filters differ from those the cursor was issued for"]})
    return cursor_filters, position
