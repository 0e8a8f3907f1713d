"""The direct path of lines.py gives exactly what marshmallow's schemas give, and leaves every refusal to them."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from api import lines

JIDS = st.sampled_from(["1@s.whatsapp.net", "2@lid", "3@g.us", "4@broadcast", "5@newsletter", "x@example.com",
                        "@s.whatsapp.net", "6@g.us/extra", ""])
ANY = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2 ** 64, max_value=2 ** 64),
                st.floats(allow_nan=False), st.text(max_size=5), st.lists(st.integers(), max_size=2))
KEYS = ["jid", "name", "lastMessageAt", "unreadCount", "archived", "pinned", "mutedUntil", "id", "sessionId",
        "type", "muted", "unread"]
LINES = st.dictionaries(st.sampled_from(KEYS), ANY, max_size=9).flatmap(
    lambda line: st.one_of(st.just(line), JIDS.map(lambda jid: {**line, "jid": jid})))


def marshmallow_answer(load, data):
    try:
        return "ok", load(data)
    except ValidationError as error:
        return "refused", error.normalized_messages()


@settings(max_examples=600, deadline=None)
@given(LINES)
def test_a_line_loads_as_marshmallow_loads_it(line):
    expected = marshmallow_answer(lines.import_schema.load, line)
    assert marshmallow_answer(lines.load_line, line) == expected
    direct = lines._direct_row(line)
    if direct is not None:
        assert expected == ("ok", direct)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={"upsert": st.lists(LINES, max_size=4),
                                           "delete": st.lists(JIDS, max_size=3),
                                           "other": st.integers()}))
def test_a_sync_body_loads_as_marshmallow_loads_it(body):
    assert marshmallow_answer(lines.load_sync_body, body) == marshmallow_answer(lines.sync_schema.load, body)


@pytest.mark.parametrize("body", [
    {"upsert": [{"jid": f"{n}@s.whatsapp.net"} for n in range(1001)]},
    {"upsert": [{"jid": "1@s.whatsapp.net"}], "delete": ["1@s.whatsapp.net"]},
    {"upsert": {"jid": "1@s.whatsapp.net"}},
    {"delete": "1@s.whatsapp.net"},
])
def test_the_whole_body_rules_are_marshmallows(body):
    assert marshmallow_answer(lines.load_sync_body, body) == marshmallow_answer(lines.sync_schema.load, body)
    assert marshmallow_answer(lines.load_sync_body, body)[0] == "refused"
