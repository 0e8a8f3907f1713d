"""The compiled Chat dumper says exactly what marshmallow's dump of ChatSchema says."""
import pytest

import models
from store import pages
from store import reads
from conftest import SESSION_ID, add_chats
from schemas import ChatSchema, compiled_dumper

ROWS = [
    {"id": 1, "session": "01J9ZX8K2QHV0M3T6R7P4N5W8C", "jid": "1@s.whatsapp.net", "type": "dm", "name": None,
     "last_message_at": None, "unread_count": 0, "archived": 0, "pinned": 1, "muted_until": None, "sort_at": 5},
    {"id": 2 ** 40, "session": "01J9ZX8K2QHV0M3T6R7P4N5W8C", "jid": "1-2@g.us", "type": "group", "name": "Ünïcode ✓",
     "last_message_at": 1719662400000, "unread_count": 7, "archived": True, "pinned": False, "muted_until": -1},
    {"id": 3, "session": "01J9ZX8K2QHV0M3T6R7P4N5W8C", "jid": "x@newsletter", "type": "newsletter", "name": "",
     "last_message_at": 0, "unread_count": 2 ** 31 - 1, "archived": False, "pinned": 0, "muted_until": 2 ** 63 - 1},
]


@pytest.mark.parametrize("row", ROWS)
def test_compiled_dump_matches_marshmallow(row):
    """Of a dict, and of the same row as a tuple whose columns are named."""
    reference = ChatSchema().dump(row)
    for compiled in (compiled_dumper(ChatSchema())(row), compiled_dumper(ChatSchema(), tuple(row))(tuple(row.values()))):
        assert compiled == reference
        assert list(compiled) == list(reference)
        assert [type(value) for value in compiled.values()] == [type(value) for value in reference.values()]


def test_compiled_dump_of_stored_chats_matches_marshmallow(orgs):
    """What each driver hands back (SQLite's 0 and 1 for flags, big integers, nulls) dumps as marshmallow does."""
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net", "name": None, "lastMessageAt": None, "unreadCount": 0},
              {"jid": "1-2@g.us", "name": "Ünïcode ✓", "lastMessageAt": 2 ** 53, "unreadCount": 7, "pinned": True,
               "archived": True, "mutedUntil": -1})
    with models.database.connection_context():
        found = pages.list_chats(reads.Owner(org_id="acme"), SESSION_ID, {}, None, 10)
    assert len(found.rows) == 2
    for row in found.rows:  # as the driver hands it over, and as a dict
        chat = dict(zip(pages.ROW_COLUMNS, row))
        reference = ChatSchema().dump(chat)
        for compiled in (compiled_dumper(ChatSchema(), pages.ROW_COLUMNS)(row), compiled_dumper(ChatSchema())(chat)):
            assert compiled == reference
            assert list(compiled) == list(reference)
            assert [type(value) for value in compiled.values()] == [type(value) for value in reference.values()]
