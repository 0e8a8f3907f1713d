"""marshmallow schemas: the one statement of what goes in and comes out.

The same schemas validate requests, serialise responses and describe the API
in /openapi.json, so the three can't drift apart.
"""
import operator
import re
import time

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema

INT64_MAX = 2 ** 63 - 1
MUTE_FOREVER = -1
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# A JID's server decides the chat's type (contract §1).
JID_TYPES = {
    "s.whatsapp.net": "dm",
    "lid": "dm",
    "g.us": "group",
    "broadcast": "broadcast",
    "newsletter": "newsletter",
}
CHAT_TYPES = ("dm", "group", "broadcast", "newsletter")
JID_PATTERN = re.compile(r"[^@\s/]+@(" + "|".join(re.escape(s) for s in JID_TYPES) + r")")
SIGNED_DIGITS = re.compile(r"[+-]?[0-9]+")
ULID_CHARS = frozenset("0123456789ABCDEFGHJKMNPQRSTVWXYZ")  # Crockford's base32


def is_ulid(text):
    """26 Crockford base32 characters, the first at most 7 (a 128-bit value)."""
    return len(text) == 26 and text[0] <= "7" and ULID_CHARS.issuperset(text)


def chat_type(jid):
    """The chat type a JID's server gives, or None when it is not a chat JID."""
    match = JID_PATTERN.fullmatch(jid)
    return JID_TYPES[match.group(1)] if match else None


# --- strict fields ------------------------------------------------------------

class StrictBoolean(fields.Boolean):
    """A JSON boolean only: "true", 1 and null are refused (marshmallow's own accepts them)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is not bool:
            raise ValidationError("must be a JSON boolean: true or false")
        return value


class StrictInteger(fields.Integer):
    """A JSON integer only: 1.5, 1.0, "1", true and null are refused."""

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is not int:
            raise ValidationError("must be a JSON integer")
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise ValidationError("must fit in a signed 64-bit integer")
        return value


class QueryBoolean(fields.Boolean):
    """A query-string boolean: exactly `true` or `false`."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value not in ("true", "false"):
            raise ValidationError("must be true or false")
        return value == "true"


class PageSize(fields.Field):
    """`limit`: signed decimal digits, clamped to 1..maximum; empty or 0 means the default.

    A plain Field, so the OpenAPI document takes its type from the metadata
    given where it is declared: an integer, or the empty string.
    """

    def __init__(self, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE, **kwargs):
        super().__init__(load_default=default, metadata={
            "description": f"1..{maximum}, clamped; missing, empty or 0 means {default}",
            "anyOf": [{"type": "integer"}, {"type": "string", "enum": [""]}]}, **kwargs)
        self.default, self.maximum = default, maximum

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "":
            return self.default
        if not isinstance(value, str) or not SIGNED_DIGITS.fullmatch(value):
            raise ValidationError(f"must be a whole number (it is clamped to 1..{self.maximum})")
        size = int(value)
        if size == 0:
            return self.default
        return max(1, min(self.maximum, size))


# --- responses -------------------------------------------------------------------

class StoredBoolean(fields.Boolean):
    """A stored flag as a JSON boolean: SQLite hands back 0 and 1, and marshmallow 4 passes them through."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else bool(value)


class ChatSchema(Schema):
    """A stored chat, exactly the contract's keys."""

    id = fields.Integer(required=True)
    jid = fields.String(required=True)
    sessionId = fields.String(attribute="session", required=True)
    type = fields.String(required=True, validate=validate.OneOf(CHAT_TYPES))
    name = fields.String(required=True, allow_none=True)
    lastMessageAt = fields.Integer(attribute="last_message_at", required=True, allow_none=True,
                                   metadata={"description": "Unix epoch milliseconds"})
    unreadCount = fields.Integer(attribute="unread_count", required=True, validate=validate.Range(min=0))
    archived = StoredBoolean(required=True)
    pinned = StoredBoolean(required=True)
    mutedUntil = fields.Integer(attribute="muted_until", required=True, allow_none=True,
                                metadata={"description": "Unix epoch milliseconds; -1 is forever"})


def compiled_dumper(schema, columns=None):
    """A dump function for a flat schema, derived from its declared fields: of a dict (a row by column name),
    or, given the `columns` of a result row, of the row itself (a tuple, read by position).

    marshmallow's own dump costs ~50 µs a chat, and a page of 50 spent more
    time there than anywhere else. This reads the same declaration (keys,
    attributes, types), so it can't drift; a test checks it against
    schema.dump on both backends. Integers and strings come back from both
    drivers as int and str already, so they are copied as they are; only a
    stored flag needs converting (SQLite hands back 0 and 1). A page dumps its
    rows as the driver hands them over: making a dict of each row first cost
    as much again as the dump (a page of 50: 1,127k instructions against 659k).
    """
    copied = (fields.Integer, fields.String)
    keys, attributes, flags = [], [], []
    for name, field in schema.fields.items():
        if type(field) not in (*copied, StoredBoolean):
            raise TypeError(f"{name}: no compiled form for {type(field).__name__}")
        keys.append(field.data_key or name)
        attributes.append(field.attribute or name)
        if type(field) is StoredBoolean:
            flags.append(field.data_key or name)
    if len(keys) < 2:
        raise TypeError("a compiled dump needs two fields or more")  # itemgetter of one gives a value, not a tuple
    values_of = operator.itemgetter(*(attributes if columns is None else map(columns.index, attributes)))
    keys = tuple(keys)

    def dump(row):
        dumped = dict(zip(keys, values_of(row)))
        for key in flags:
            if dumped[key] is not None:
                dumped[key] = bool(dumped[key])
        return dumped
    return dump


# A stored chat (a row by column name) as the API gives it.
dump_chat = compiled_dumper(ChatSchema())


class ChatPageSchema(Schema):
    data = fields.List(fields.Nested(ChatSchema), required=True)
    nextCursor = fields.String(required=True, allow_none=True)


class ErrorBodySchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


# --- requests -------------------------------------------------------------------

def now_ms():
    return int(time.time() * 1000)


def check_mute_instant(value):
    if value != MUTE_FOREVER and value <= now_ms():
        raise ValidationError("must be Unix epoch milliseconds in the future "
                              "(not seconds), or -1 to mute forever")


class ChatPatchSchema(Schema):
    """PATCH body: only these fields, each of its exact JSON type."""

    class Meta:
        unknown = RAISE

    archived = StrictBoolean(metadata={"description": "Archiving also unpins"})
    pinned = StrictBoolean(metadata={"description": "At most MAX_PINNED_CHATS (3) pinned; not while archived"})
    mutedUntil = StrictInteger(validate=check_mute_instant, metadata={
        "minimum": MUTE_FOREVER, "maximum": INT64_MAX,
        "description": "Unix epoch milliseconds in the future, or -1 to mute forever"})
    unmute = StrictBoolean(metadata={"description": "true clears any mute, whatever mutedUntil says"})

    @validates_schema
    def check_pin_with_archive(self, data, **kwargs):
        if data.get("archived") is True and data.get("pinned") is True:
            raise ValidationError("an archived chat can't be pinned: archiving unpins",
                                  field_name="pinned")


def chat_changes(patch):
    """The columns a validated PATCH body writes, and only those."""
    changes = {}
    if "archived" in patch:
        changes["archived"] = patch["archived"]
        if patch["archived"]:
            changes["pinned"] = False  # WhatsApp unpins what it archives
    if "pinned" in patch:
        changes.setdefault("pinned", patch["pinned"])
    if patch.get("unmute") is True:
        changes["muted_until"] = None
    elif "mutedUntil" in patch:
        changes["muted_until"] = patch["mutedUntil"]
    return changes


class ChatListQuerySchema(Schema):
    """The list's query string; unknown parameters are ignored."""

    class Meta:
        unknown = EXCLUDE

    limit = PageSize()
    cursor = fields.String(metadata={"description": "nextCursor of the previous page"})
    archived = QueryBoolean()
    pinned = QueryBoolean()
    type = fields.String(validate=validate.OneOf(CHAT_TYPES))

    FILTERS = ("archived", "pinned", "type")


def check_chat_jid(jid):
    if chat_type(jid) is None:
        raise ValidationError("is not a chat JID (user@s.whatsapp.net, @lid, @g.us, @broadcast or @newsletter)")


class ChatImportSchema(Schema):
    """One line of an import file or a sync body: a Chat object as GET returns it, `jid` required.

    `id`, `sessionId` and `type` (present in saved GET responses) are ignored;
    any other unknown key is an error. Loads to the chat's columns, with the
    type its JID gives.
    """

    class Meta:
        unknown = RAISE

    jid = fields.String(required=True, validate=check_chat_jid)
    name = fields.String(allow_none=True)
    lastMessageAt = StrictInteger(attribute="last_message_at", allow_none=True)
    unreadCount = StrictInteger(attribute="unread_count", validate=validate.Range(min=0, max=2 ** 31 - 1))
    archived = StrictBoolean()
    pinned = StrictBoolean()
    mutedUntil = StrictInteger(attribute="muted_until", allow_none=True)

    IGNORED = ("id", "sessionId", "type")

    @pre_load
    def drop_ignored(self, data, **kwargs):
        if isinstance(data, dict):
            data = {key: value for key, value in data.items() if key not in self.IGNORED}
        return data

    @post_load
    def add_type(self, row, **kwargs):
        row["type"] = chat_type(row["jid"])
        return row
