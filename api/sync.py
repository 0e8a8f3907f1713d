"""The sync blueprint: the gateway writes its stored copy (POST …/sync), and everyone reads what changed (GET …/changes).

Each view is auth -> schema -> writes/feed -> schema, like the chats views.
"""
import time

from flask import Blueprint, current_app

import models
from api.chats import owned_session_or_404
from api.conditional import json_response
from api.cursors import encode_since
from api.inputs import (SESSION_NOT_FOUND, json_object_body, load_or_422, query_or_422, session_id_or_404,
                        signing_key, since_position)
from api.lines import load_sync_body
from auth import current_owner, requires
from errors import ApiError, not_found
from store import feed, writes
from store.watch import watcher
from sync_schemas import MAX_CHANGES_PAGE, ChangesQuerySchema, dump_change

bp = Blueprint("sync", __name__, url_prefix="/api/v1/sessions/<sid>")
changes_query_schema = ChangesQuerySchema()
GONE_MESSAGE = ("changes older than this since token have been purged, so a deletion may have been missed; "
                "start again without since (a full sync)")


@bp.post("/sync")
@requires("sync")
def sync_chats(sid):
    """Upsert and delete chats of the session, all or nothing."""
    session_id = session_id_or_404(sid)
    owned_session_or_404(session_id)
    body = load_or_422(load_sync_body, json_object_body(current_app.config["CHATSTORE"].sync_max_body_bytes))
    rows, delete_jids = body.get("upsert", []), body.get("delete", [])
    with models.database.atomic():
        _, deleted, position = writes.sync_chats(session_id, rows, delete_jids, writes.NEW_CHAT_DEFAULTS)
    return {"upserted": len({row["jid"] for row in rows}), "deleted": deleted,
            "since": encode_since(signing_key(), session_id, position)}


@bp.get("/changes")
@requires("read")
def list_changes(sid):
    """What changed in the session after `since`, in change order."""
    session_id = session_id_or_404(sid)
    try:
        query = query_or_422(changes_query_schema)
        position = since_position(session_id, query.get("since"))
    except ApiError:
        owned_session_or_404(session_id)  # 404 comes before 422
        raise
    changed_by, limit = query.get("changedBy"), query["limit"]
    # With a filter, a wider window of the order is read, so a worker skipping its own writes
    # moves through them quickly; either way a page reads a bounded number of rows.
    window = (MAX_CHANGES_PAGE if changed_by else limit) + 1
    found = feed.changes_after(current_owner(), session_id, position, window)
    if not found.session_owned:
        raise not_found(SESSION_NOT_FOUND)
    if position != feed.START and position < found.head["purged_seq"]:
        raise ApiError(410, GONE_MESSAGE)
    picked, position, has_more = feed.page_of_changes(found.rows, window - 1, limit, changed_by, position)
    deadline = time.monotonic() + query["wait"]
    while not picked and not has_more and time.monotonic() < deadline and not watcher.stopping():
        # Every check above is settled; the wait holds no connection (store/watch.py), and the read after it
        # takes what it needs again.
        models.database.close()
        moved = watcher.wait_past(session_id, position, deadline - time.monotonic())
        if moved:
            found = feed.changes_after(current_owner(), session_id, position, window)
            picked, position, has_more = feed.page_of_changes(found.rows, window - 1, limit, changed_by, position)
    return json_response({"data": [dump_change(row) for row in picked],
                          "nextSince": encode_since(signing_key(), session_id, position), "hasMore": has_more})
