"""Tenant isolation: every endpoint × target × kind of caller × capability set, exact status and body."""
import itertools

import pytest

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
