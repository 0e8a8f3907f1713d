"""marshmallow schemas of an organization's admin over HTTP: its API keys (contract §14).

Like schemas.py, they validate requests, serialise responses and describe the operations in /openapi.json.
"""
import calendar
import time

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates

from config import CAPABILITIES
from schemas import PageSize, StrictInteger

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


class ApiKeyListQuerySchema(Schema):
    """The key list's query string; unknown parameters are ignored."""

    class Meta:
        unknown = EXCLUDE

    limit = PageSize()
    cursor = fields.String(metadata={"description": "nextCursor of the previous page"})
