"""Tenant isolation: every endpoint × target × kind of caller × capability set, exact status and body."""
import itertools

import pytest

import models
from store import pages
from store import reads
from auth import api_key_digest
from conftest import MISSING_SESSION_ID, OTHER_SESSION_ID, SESSION_ID, add_chats, chat_url, error_body, stored

JID, MISSING_JID = "6281234567890@s.whatsapp.net", "6280000000000@s.whatsapp.net"
TARGETS = {
    "own": (SESSION_ID, JID),
    "other org": (OTHER_SESSION_ID, JID),
    "no such session": (MISSING_SESSION_ID, JID),
    "no such chat": (SESSION_ID, MISSING_JID),
}
ENDPOINTS = {"get one": ("GET", "read"), "list": ("GET", "read"), "patch": ("PATCH", "send")}
CAPABILITY_SETS = {"read,send": {"read", "send"}, "read": {"read"}, "send": {"send"}, "none": set()}
ROLES = {"read,send": "admin", "read": "viewer", "send": "sender", "none": "guest"}
CELLS = [cell for cell in itertools.product(ENDPOINTS, TARGETS, ["api_key", "jwt"], CAPABILITY_SETS)
         if not (cell[2] == "api_key" and cell[3] == "none")]  # a key always holds a capability


@pytest.fixture
def both_orgs(orgs):
    add_chats(SESSION_ID, {"jid": JID, "name": "Ours", "lastMessageAt": 1000, "unreadCount": 1})
    add_chats(OTHER_SESSION_ID, {"jid": JID, "name": "Theirs", "lastMessageAt": 2000, "unreadCount": 9})
    return stored(JID, SESSION_ID), stored(JID, OTHER_SESSION_ID)


def token_for(kind, capabilities, keys, identity_provider):
    if kind == "api_key":
        return keys[capabilities]
    return identity_provider.mint({"org_id": "acme", "org_role": ROLES[capabilities]})


def chat_json(row, **changes):
    chat = {"id": row["id"], "jid": row["jid"], "sessionId": row["session"], "type": row["type"], "name": row["name"],
            "lastMessageAt": row["last_message_at"], "unreadCount": row["unread_count"], "archived": row["archived"],
            "pinned": row["pinned"], "mutedUntil": row["muted_until"]}
    return {**chat, **changes}


def expected(endpoint, target, capabilities, ours):
    method, needed = ENDPOINTS[endpoint]
    if needed not in CAPABILITY_SETS[capabilities]:
        return 403, error_body("forbidden", f"this token lacks the {needed!r} capability")
    if target in ("other org", "no such session"):
        return 404, error_body("not_found", "session not found")
    if endpoint == "list":
        return 200, {"data": [chat_json(ours)], "nextCursor": None}
    if target == "no such chat":
        return 404, error_body("not_found", "chat not found")
    return 200, chat_json(ours, archived=True) if endpoint == "patch" else chat_json(ours)


@pytest.mark.parametrize("endpoint, target, kind, capabilities", CELLS, ids=["/".join(cell) for cell in CELLS])
def test_isolation_matrix(client, keys, identity_provider, both_orgs, endpoint, target, kind, capabilities):
    ours, theirs = both_orgs
    session_id, jid = TARGETS[target]
    url = chat_url(session_id) if endpoint == "list" else chat_url(session_id, jid)
    headers = {"Authorization": f"Bearer {token_for(kind, capabilities, keys, identity_provider)}"}
    method = ENDPOINTS[endpoint][0]
    response = client.open(url, method=method, headers=headers, json={"archived": True} if method == "PATCH" else None)
    status, body = expected(endpoint, target, capabilities, ours)
    assert (response.status_code, response.get_json()) == (status, body)
    assert stored(JID, OTHER_SESSION_ID) == theirs


@pytest.mark.parametrize("shape", ["one chat", "page"])
def test_a_read_never_reaches_a_chat_its_caller_may_not_see(orgs, keys, shape):
    """The SQL's own gate, beneath the views' 404 and 403: for another org's session, or a key without the
    capability, the statement hands back the head alone, never the chat."""
    add_chats(OTHER_SESSION_ID, {"jid": "1@s.whatsapp.net"})
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    cannot = [(reads.Owner(org_id="acme"), OTHER_SESSION_ID),
              (reads.Owner(key_digest=api_key_digest(keys["read"]), capability="read"), OTHER_SESSION_ID),
              (reads.Owner(key_digest=api_key_digest(keys["send"]), capability="read"), SESSION_ID)]
    can = [(reads.Owner(org_id="acme"), SESSION_ID),
           (reads.Owner(key_digest=api_key_digest(keys["read"]), capability="read"), SESSION_ID)]
    with models.database.connection_context():
        def found(owner, session_id):
            if shape == "one chat":
                return reads.find_chat(owner, session_id, "1@s.whatsapp.net")
            page = pages.list_chats(owner, session_id, {}, None, 10)
            return page._replace(rows=[dict(zip(pages.ROW_COLUMNS, row)) for row in page.rows])
        for owner, session_id in cannot:
            refused = found(owner, session_id)
            assert refused.head is not None and refused.head["owned_session"] is None and refused.rows == []
        for owner, session_id in can:
            allowed = found(owner, session_id)
            assert allowed.head["owned_session"] == session_id
            assert [chat["jid"] for chat in allowed.rows] == ["1@s.whatsapp.net"]
