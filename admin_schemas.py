"""marshmallow schemas of an organization's admin over HTTP: its API keys and webhook endpoints (contract §14).

Like schemas.py, they validate requests, serialise responses and describe the operations in /openapi.json.
"""
import calendar
import time

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates

from config import CAPABILITIES
from schemas import PageSize, StoredBoolean, StrictBoolean, StrictInteger
from sync_schemas import CHANGED_BY

NAME_MAX_LENGTH = 100


class EpochMillis(fields.Integer):
    """A stored time (naive UTC) as Unix epoch milliseconds; null stays null."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None or isinstance(value, int):
            return value
        return calendar.timegm(value.timetuple()) * 1000 + value.microsecond // 1000


class CapabilityList(fields.List):
    """A key's capabilities: stored as sorted text ("admin,read"), given as a list in the API's own order
    (read, send, sync, admin), whatever order they were granted in."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else [capability for capability in CAPABILITIES if capability in value.split(",")]


class CapabilitySet(fields.List):
    """Capabilities given as a list: each one known (an error names its index), none twice."""

    def _deserialize(self, value, attr, data, **kwargs):
        capabilities = super()._deserialize(value, attr, data, **kwargs)
        if len(set(capabilities)) != len(capabilities):
            raise ValidationError("must not name a capability twice")
        return capabilities


class ListQuerySchema(Schema):
    """A listing's query string; unknown parameters are ignored."""

    class Meta:
        unknown = EXCLUDE

    limit = PageSize()
    cursor = fields.String(metadata={"description": "nextCursor of the previous page"})


class ApiKeySchema(Schema):
    """An API key as the API shows it: never the key itself, nor its digest (but at creation: ApiKeyCreated)."""

    id = fields.Function(lambda row: str(row["id"]), required=True, metadata={"type": "string"})
    name = fields.String(required=True, allow_none=True)
    capabilities = CapabilityList(fields.String(validate=validate.OneOf(CAPABILITIES)), required=True)
    createdAt = EpochMillis(attribute="created_at", required=True, metadata={"description": "Unix epoch ms"})
    lastUsedAt = EpochMillis(attribute="last_used_at", required=True, allow_none=True,
                             metadata={"description": "Unix epoch ms, recorded at most once a minute"})
    expiresAt = EpochMillis(attribute="expires_at", required=True, allow_none=True,
                            metadata={"description": "Unix epoch ms; null: never"})
    revokedAt = EpochMillis(attribute="revoked_at", required=True, allow_none=True,
                            metadata={"description": "Unix epoch ms; null: live"})


class ApiKeyCreatedSchema(ApiKeySchema):
    key = fields.String(required=True, metadata={"description": "The key itself: shown this once, never again"})


class ApiKeyPageSchema(Schema):
    data = fields.List(fields.Nested(ApiKeySchema), required=True)
    nextCursor = fields.String(required=True, allow_none=True)


def now_ms():
    return int(time.time() * 1000)


class ApiKeyCreateSchema(Schema):
    """POST /api/v1/api-keys: exactly these fields."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=NAME_MAX_LENGTH),
                         metadata={"description": "What the key is for, 1 to 100 characters"})
    capabilities = CapabilitySet(
        fields.String(validate=validate.OneOf(CAPABILITIES)), required=True, validate=validate.Length(min=1),
        metadata={"uniqueItems": True, "description": f"A non-empty set of {', '.join(CAPABILITIES)}, no repeats"})
    expiresAt = StrictInteger(allow_none=True, load_default=None, metadata={
        "description": "Unix epoch milliseconds in the future, or null (the default) for a key that never expires"})

    @validates("expiresAt")
    def check_future(self, value, **kwargs):
        if value is not None and value <= now_ms():
            raise ValidationError("must be Unix epoch milliseconds in the future, or null")



# --- Webhook endpoints --------------------------------------------------------

URL_MAX_LENGTH = 2048
DESCRIPTION_MAX_LENGTH = 500
MAX_WEBHOOK_SESSIONS = 1000


class SessionIdList(fields.List):
    """Session ids, none twice, uppercased as stored (ULIDs match case-insensitively)."""

    def __init__(self, **kwargs):
        super().__init__(fields.String(validate=validate.Length(max=26)), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        session_ids = [session_id.upper() for session_id in super()._deserialize(value, attr, data, **kwargs)]
        if len(set(session_ids)) != len(session_ids):
            raise ValidationError("must not name a session twice")
        if not 1 <= len(session_ids) <= MAX_WEBHOOK_SESSIONS:
            raise ValidationError(f"must name 1 to {MAX_WEBHOOK_SESSIONS} sessions, or be null for every session")
        return session_ids


class WebhookSchema(Schema):
    """A webhook endpoint as the API shows it: never its secret (but at creation and rotation)."""

    id = fields.Function(lambda row: str(row["id"]), required=True, metadata={"type": "string"})
    url = fields.String(required=True)
    description = fields.String(required=True, allow_none=True)
    sessions = fields.List(fields.String(), required=True, allow_none=True,
                           metadata={"description": "The sessions it follows; null: every session of the org"})
    changedBy = fields.String(attribute="changed_by", required=True, allow_none=True,
                              validate=validate.OneOf(CHANGED_BY),
                              metadata={"description": "Only changes of this kind; null: all"})
    enabled = StoredBoolean(required=True)
    disabledReason = fields.String(attribute="disabled_reason", required=True, allow_none=True,
                                   metadata={"description": "Why delivery disabled it (410, retries spent)"})
    createdAt = fields.Integer(attribute="created_at", required=True, metadata={"description": "Unix epoch ms"})


class WebhookWithSecretSchema(WebhookSchema):
    secret = fields.String(required=True, metadata={
        "description": "whsec_…, the signing secret: shown at creation and rotation only, never again"})


class WebhookPageSchema(Schema):
    data = fields.List(fields.Nested(WebhookSchema), required=True)
    nextCursor = fields.String(required=True, allow_none=True)


class WebhookFields(Schema):
    """The fields an admin sets, exactly these."""

    class Meta:
        unknown = RAISE

    url = fields.String(validate=validate.Length(min=1, max=URL_MAX_LENGTH), metadata={
        "description": "An http(s) URL without credentials, on a public address"})
    description = fields.String(allow_none=True, validate=validate.Length(max=DESCRIPTION_MAX_LENGTH))
    sessions = SessionIdList(allow_none=True, metadata={
        "uniqueItems": True, "description": "Session ids of the org, or null (every session, made later too)"})
    changedBy = fields.String(allow_none=True, validate=validate.OneOf(CHANGED_BY))


class WebhookCreateSchema(WebhookFields):
    """POST /api/v1/webhooks."""

    url = fields.String(required=True, validate=validate.Length(min=1, max=URL_MAX_LENGTH), metadata={
        "description": "An http(s) URL without credentials, on a public address"})
    description = fields.String(allow_none=True, load_default=None,
                                validate=validate.Length(max=DESCRIPTION_MAX_LENGTH))
    sessions = SessionIdList(allow_none=True, load_default=None, metadata={
        "uniqueItems": True, "description": "Session ids of the org, or null (the default: every session)"})
    changedBy = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(CHANGED_BY))


class WebhookUpdateSchema(WebhookFields):
    """PATCH /api/v1/webhooks/{id}: any of the fields; those not sent keep their value."""

    enabled = StrictBoolean(metadata={"description": "false stops delivery; true resumes where it stopped"})


class ReplaySchema(Schema):
    """POST /api/v1/webhooks/{id}/replay."""

    class Meta:
        unknown = RAISE

    sessionId = fields.String(required=True, validate=validate.Length(min=1, max=26))
    since = fields.String(allow_none=True, load_default=None, metadata={
        "description": "A changes token of the session (nextSince); null: from the start, a full resync"})


class ReplayAcceptedSchema(Schema):
    sessionId = fields.String(required=True)
    since = fields.String(required=True, allow_none=True)


class DeliverySchema(Schema):
    """One delivery attempt."""

    webhookId = fields.String(attribute="message_id", required=True,
                              metadata={"description": "The webhook-id header: the same on every retry of a batch"})
    sessionId = fields.String(attribute="session_id", required=True)
    attempt = fields.Integer(required=True)
    status = fields.Integer(required=True, allow_none=True, metadata={"description": "The receiver's HTTP status"})
    error = fields.String(required=True, allow_none=True)
    durationMs = fields.Integer(attribute="duration_ms", required=True)
    at = fields.Integer(required=True, metadata={"description": "Unix epoch ms"})
    nextAttemptAt = fields.Integer(attribute="next_attempt_at", required=True, allow_none=True,
                                   metadata={"description": "Unix epoch ms of the retry; null: none planned"})


class DeliveryPageSchema(Schema):
    data = fields.List(fields.Nested(DeliverySchema), required=True)
    nextCursor = fields.String(required=True, allow_none=True)
