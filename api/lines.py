"""Chat lines — `import-chats` lines and `POST …/sync` bodies — loaded exactly as marshmallow loads them, faster.

marshmallow's load costs some 40 µs a line, most of a million-line import. A
line whose keys are all known and well typed takes the direct path here; any
other — no jid, a wrong type, an unknown key, a JID of no known server — goes
to marshmallow (ChatImportSchema, SyncSchema), which decides and words the
error. tests/test_lines.py holds the direct path to marshmallow's answer on
generated lines, so the two can't drift apart.
"""
from schemas import INT64_MAX, ChatImportSchema, chat_type
from sync_schemas import MAX_SYNC_ENTRIES, SyncSchema

UNREAD_MAX = 2 ** 31 - 1
import_schema = ChatImportSchema()
sync_schema = SyncSchema()


def _optional_int64(value):
    return value is None or (type(value) is int and -INT64_MAX - 1 <= value <= INT64_MAX)


# key -> (column, is it acceptable as it is?), as ChatImportSchema declares them.
DIRECT = {
    "jid": ("jid", lambda value: type(value) is str),
    "name": ("name", lambda value: value is None or type(value) is str),
    "lastMessageAt": ("last_message_at", _optional_int64),
    "unreadCount": ("unread_count", lambda value: type(value) is int and 0 <= value <= UNREAD_MAX),
    "archived": ("archived", lambda value: type(value) is bool),
    "pinned": ("pinned", lambda value: type(value) is bool),
    "mutedUntil": ("muted_until", _optional_int64),
}


def _direct_row(line):
    """The row for a line every key of which is acceptable as it is, else None."""
    row = {}
    for key, value in line.items():
        known = DIRECT.get(key)
        if known is None:
            if key in ChatImportSchema.IGNORED:
                continue
            return None
        column, acceptable = known
        if not acceptable(value):
            return None
        row[column] = value
    kind = chat_type(row["jid"]) if "jid" in row else None
    if kind is None:
        return None
    row["type"] = kind
    return row


def load_line(line):
    """A line (a dict) as chat columns; raises marshmallow's ValidationError for a bad one."""
    return _direct_row(line) or import_schema.load(line)


def load_sync_body(body):
    """A sync body (a dict) as {"upsert": [rows], "delete": [jids]}; raises marshmallow's ValidationError."""
    upsert, delete = body.get("upsert", []), body.get("delete", [])
    if (set(body) <= {"upsert", "delete"} and type(upsert) is list and type(delete) is list
            and len(upsert) + len(delete) <= MAX_SYNC_ENTRIES
            and all(type(jid) is str and chat_type(jid) for jid in delete)
            and all(type(line) is dict for line in upsert)):
        rows = [_direct_row(line) for line in upsert]
        if all(rows) and not {row["jid"] for row in rows} & set(delete):
            return {name: value for name, value in (("upsert", rows), ("delete", delete)) if name in body}
    return sync_schema.load(body)
