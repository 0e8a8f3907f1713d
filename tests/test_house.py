"""The house's own rules, held: each fact stated once, authentication settled in one place, public framework
APIs only."""
import ast
import pathlib
import re
import sys

import pytest
from flask import Blueprint, jsonify

import models
from app import create_app
from auth import api_key_digest, new_api_key, requires
from cli import issue_api_key
from conftest import SESSION_ID, add_chats, error_body
from store import feed, pages, reads
from store.sql import PARAMETER

ROOT = pathlib.Path(__file__).resolve().parent.parent
ACME, KEY = reads.Owner(org_id="acme"), reads.Owner(key_digest="x" * 64, capability="read", now_ms=0)


def test_a_chats_columns_are_the_models():
    model = [field.name for field in models.Chat._meta.sorted_fields]
    assert [name for name, _ in reads.CHAT_FIELDS] == model
    # A tombstone's row stands under a chat's in the feed's UNION: the same names, in the same order.
    tombstone = re.findall(r'AS "(\w+)"', feed.TOMBSTONE_COLUMNS)
    assert tombstone == model


@pytest.mark.parametrize("statement", [
    lambda owner: reads.find_chat_statement(owner, SESSION_ID, "1@s.whatsapp.net"),
    lambda owner: reads.session_state_statement(owner, SESSION_ID),
    lambda owner: feed.changes_statement(owner, SESSION_ID, 5, 10),
    lambda owner: pages.page_statement(owner, SESSION_ID, {"archived": True, "type": "dm"}, [True, 5, 9], 10),
    lambda owner: pages.page_statement(owner, SESSION_ID, {"pinned": False}, None, 10),
])
@pytest.mark.parametrize("owner", [ACME, KEY])
def test_every_parameter_a_statement_names_is_given_by_name(statement, owner, database_url):
    """Fragments carry named parameters: a statement's text and its parameters agree, whatever the fragments'
    order."""
    text, params = statement(owner)
    assert set(PARAMETER.findall(text)) == set(params)


def test_the_key_a_hot_read_finds_is_the_key_a_lookup_finds(app, keys, orgs):
    """The key's columns are written once (reads.KEY_FIELDS): the head of a read and a lookup agree."""
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"})
    owner = reads.Owner(key_digest=api_key_digest(keys["read"]), capability="read", now_ms=0)
    with models.database.connection_context():
        found = reads.find_chat(owner, SESSION_ID, "1@s.whatsapp.net")
        looked_up = reads.find_api_key(owner.key_digest, 0)
    assert owner.key_row is found.head
    assert looked_up == {name: found.head[name] for name, _ in reads.KEY_FIELDS}
    assert looked_up["key_org_id"] == "acme" and not looked_up["key_revoked"] and not looked_up["key_expired"]


@pytest.fixture
def probe(base_environ):
    """A view under `requires` that reads nothing at all: whether its key is settled is `requires`' doing.
    (An app of its own, outside the suite's check of every response against /openapi.json.)"""
    app = create_app(base_environ)
    probes = Blueprint("probe", __name__)

    @probes.get("/probe")
    @requires("read")
    def read_nothing():
        return jsonify({"ok": True})
    app.register_blueprint(probes)
    return app.test_client()


@pytest.mark.parametrize("key, status, message", [
    ("read", 200, None), ("send", 403, "this token lacks the 'read' capability"),
    ("revoked", 401, "API key has been revoked"), ("unknown", 401, "unknown API key")])
def test_a_view_that_reads_nothing_still_has_its_key_settled(probe, keys, orgs, key, status, message):
    if key == "revoked":
        with models.database.connection_context():
            keys["revoked"] = issue_api_key("acme", "read", "gone")
            models.ApiKey.update(revoked_at=models.now_utc()).where(
                models.ApiKey.digest == api_key_digest(keys["revoked"])).execute()
    token = new_api_key() if key == "unknown" else keys[key]
    response = probe.get("/probe", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status
    if message is None:
        assert response.get_json() == {"ok": True}
    else:
        assert response.get_json() == error_body("forbidden" if status == 403 else "unauthorized", message)


# The leading-underscore names a library documents for use: werkzeug's proxies, peewee's model metadata,
# marshmallow's field extension points, a named tuple's methods; and the dunders every object has.
DOCUMENTED_PRIVATE_NAMES = {"_get_current_object", "_meta", "_serialize", "_deserialize", "_replace", "_asdict"}
# Names that are the old violations, kept as a check of the check.
PRIVATE_NAMES = re.compile(r"_got_first_request|request_ctx|_after_request_functions|make_default_options_response"
                           r"|\._status_code|_pool_lock|\._in_use\b|_heap_counter|_close_raw|_can_reuse|\._connections\b"
                           r"|__exception_wrapper__|\._value\b|\._sum\b|\._buckets\b|ValueClass|\._state\b|_is_closed")


def project_sources():
    return [path for path in ROOT.glob("**/*.py")
            if not {".venv", "tests", "bench", "migrations"} & set(path.relative_to(ROOT).parts)]


def is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_source_reaches_into_a_frameworks_private_names():
    sources = project_sources()
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in sources
             for number, line in enumerate(path.read_text().splitlines(), 1) if PRIVATE_NAMES.search(line)]
    assert len(sources) > 20 and found == []


def test_no_source_reads_a_private_name_of_anything_but_itself():
    """`x._name` only where x is the object's own `self` or `cls`, or the name is one a library documents."""
    found = []
    for path in project_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and is_private(node.attr)
                    and node.attr not in DOCUMENTED_PRIVATE_NAMES
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    assert found == []


def test_no_class_overrides_a_librarys_private_method():
    """A class of ours may extend a library's class through its public methods only (and marshmallow's documented
    `_serialize`/`_deserialize`): a private method of the library's, overridden, is an internal it may change."""
    sources = {str(path) for path in project_sources()}
    ours = {name: module for name, module in list(sys.modules.items()) if getattr(module, "__file__", None) in sources}
    overrides = []
    for module_name, module in ours.items():
        for cls in vars(module).values():
            if not (isinstance(cls, type) and cls.__module__ == module_name):
                continue
            library_bases = [base for base in cls.__mro__[1:] if base.__module__ not in ours and base is not object]
            overrides += [f"{module_name}.{cls.__name__}.{name}" for name, value in vars(cls).items()
                          if is_private(name) and name not in DOCUMENTED_PRIVATE_NAMES
                          and getattr(value, "__module__", None) == module_name  # written here, not by a metaclass
                          and any(hasattr(base, name) for base in library_bases)]
    assert len(ours) > 20 and overrides == []


def test_the_layout_keeps_its_limits():
    """At most 12 modules at the root (the design card's names and a few more), and no source file, tests and
    benchmarks included, over 400 lines: a file that grows past it holds more than one job."""
    root_modules = sorted(path.name for path in ROOT.glob("*.py"))
    long_files = [f"{path.relative_to(ROOT)}: {len(path.read_text().splitlines())}" for path in ROOT.glob("**/*.py")
                  if ".venv" not in path.relative_to(ROOT).parts and len(path.read_text().splitlines()) > 400]
    assert {"app.py", "auth.py", "config.py", "models.py", "schemas.py"} <= set(root_modules)
    assert len(root_modules) <= 12 and long_files == [], (root_modules, long_files)
