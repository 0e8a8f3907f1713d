"""marshmallow schemas of the sync endpoint and the changes feed (contract §9, §10).

Like schemas.py, they validate requests, serialise responses and describe the
two operations in /openapi.json.
"""
import re

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from schemas import ChatImportSchema, ChatSchema, PageSize, check_chat_jid, dump_chat

MAX_SYNC_ENTRIES = 1000
DEFAULT_CHANGES_PAGE = 100
MAX_CHANGES_PAGE = 1000
CHANGED_BY = ("api", "sync")
MAX_WAIT_SECONDS = 30
DIGITS = re.compile(r"[0-9]+")


class SyncSchema(Schema):
    """POST …/sync: chats to upsert (import lines) and jids to delete, at most 1,000 together."""

    class Meta:
        unknown = RAISE

    upsert = fields.List(fields.Nested(ChatImportSchema), metadata={
        "description": "Import lines: `jid` required; a key left out keeps the stored value "
                       "(or takes its default for a new chat). Applied in order."})
    delete = fields.List(fields.String(validate=check_chat_jid), metadata={
        "description": "JIDs of chats to delete; one that is not stored is not an error."})

    @validates_schema
    def check_entries(self, data, **kwargs):
        upsert, delete = data.get("upsert") or [], data.get("delete") or []
        if len(upsert) + len(delete) > MAX_SYNC_ENTRIES:
            message = f"at most {MAX_SYNC_ENTRIES} entries in upsert and delete together"
            raise ValidationError({name: [message] for name in ("upsert", "delete") if data.get(name)})
        upserted = {row["jid"] for row in upsert}
        both = {str(index): ["is also in upsert; a chat can't be upserted and deleted in one sync"]
                for index, jid in enumerate(delete) if jid in upserted}
        if both:
            raise ValidationError({"delete": both})


class SyncResultSchema(Schema):
    upserted = fields.Integer(required=True, metadata={"description": "Distinct chats written."})
    deleted = fields.Integer(required=True, metadata={"description": "Chats removed."})
    since = fields.String(required=True, metadata={"description": "A changes token that follows this write."})


class ChangeSchema(Schema):
    """One chat's place in the change order: its state now, or a tombstone."""

    jid = fields.String(required=True)
    deleted = fields.Boolean(required=True)
    changedBy = fields.String(required=True, validate=validate.OneOf(CHANGED_BY), metadata={
        "description": "api: the chat's last write was a PATCH; sync: a sync, an import or the demo."})
    chat = fields.Nested(ChatSchema, required=True, allow_none=True, metadata={
        "description": "The chat as stored now; null for a deleted chat."})


class ChangesPageSchema(Schema):
    data = fields.List(fields.Nested(ChangeSchema), required=True)
    nextSince = fields.String(required=True, metadata={"description": "Send back as `since` for what follows."})
    hasMore = fields.Boolean(required=True, metadata={"description": "More changes are already waiting."})


class WaitSeconds(fields.Field):
    """`wait`: a whole number of seconds, 0..30; empty or missing is 0 (answer at once)."""

    def __init__(self, **kwargs):
        super().__init__(load_default=0, metadata={
            "description": f"Seconds (0..{MAX_WAIT_SECONDS}) to hold the request while the page would be empty, "
                           "answering within a second of the next change; 0 (the default) answers at once.",
            "anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
                      {"type": "string", "enum": [""]}]}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "":
            return 0
        if not isinstance(value, str) or not DIGITS.fullmatch(value) or int(value) > MAX_WAIT_SECONDS:
            raise ValidationError(f"must be a whole number of seconds from 0 to {MAX_WAIT_SECONDS}")
        return int(value)


class ChangesQuerySchema(Schema):
    """The feed's query string; unknown parameters are ignored."""

    class Meta:
        unknown = EXCLUDE

    since = fields.String(metadata={"description": "nextSince of a previous page (or `since` of a sync); "
                                                   "empty or missing starts from the beginning."})
    limit = PageSize(default=DEFAULT_CHANGES_PAGE, maximum=MAX_CHANGES_PAGE)
    changedBy = fields.String(validate=validate.OneOf(CHANGED_BY), metadata={
        "description": "Only changes whose last write was of this kind; the position still advances past others."})
    wait = WaitSeconds()


def dump_change(row):
    """A Change of a row of the change order (store.feed): the feed's page and a webhook's batch alike."""
    deleted = bool(row["deleted"])
    return {"jid": row["jid"], "deleted": deleted, "changedBy": row["changed_by"],
            "chat": None if deleted else dump_chat(row)}
