"""Fixtures: one database per run (SQLite file, or TEST_DATABASE_URL), emptied per test.

The same test modules run on both backends: CI runs the suite once with no
TEST_DATABASE_URL and once with a PostgreSQL one.
"""
import functools
import json
import logging
import os

import pytest
from flask import current_app, request, request_finished

import models
from app import create_app
from auth import API_KEY_PATTERN, JWT_PATTERN
from store import writes
from cli import chat_rows, issue_api_key
from config import DEFAULT_ROLE_CAPABILITIES
from identity_provider import IdentityProvider
from openapi_responses import check_against_openapi, record_response

SESSION_ID = "01J9ZX8K2QHV0M3T6R7P4N5W8C"
OTHER_SESSION_ID = "01J9ZX8K2QHV0M3T6R7P4N5W8D"   # belongs to the other org
MISSING_SESSION_ID = "01J9ZX8K2QHV0M3T6R7P4N5W8E"
DATA_TABLES = [models.WebhookDelivery, models.WebhookStream, models.Webhook, models.WebhookAttemptCount,
               models.ChatTombstone, models.Chat, models.ApiKey, models.Session, models.Org]


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        url = "sqlite:///" + str(tmp_path_factory.mktemp("db") / "chatstore.db")
    models.bind_database(url)
    with models.database.connection_context():
        # A fresh schema each run, so the migrations themselves are under test.
        models.database.drop_tables(DATA_TABLES + [models.Setting], safe=True)
        models.database.execute_sql("DROP TABLE IF EXISTS schema_migration")
    models.migrate()
    return url


@pytest.fixture(scope="session")
def identity_provider():
    """A real JWKS server on loopback, and a minter of login tokens it can verify."""
    provider = IdentityProvider()
    yield provider
    provider.stop()


def app_environ(database_url, identity_provider):
    """The environment every test app starts from; `sender` is a role with `send` alone, `worker` read and sync."""
    return {"DATABASE_URL": database_url, "JWKS_URL": identity_provider.url,
            "ROLE_CAPABILITIES": json.dumps({**DEFAULT_ROLE_CAPABILITIES, "sender": ["send"],
                                             "worker": ["read", "sync"]})}


@pytest.fixture
def base_environ(database_url, identity_provider):
    identity_provider.reset()
    return app_environ(database_url, identity_provider)


@pytest.fixture(scope="session")
def recorded_responses():
    """Every response the test apps gave, checked against /openapi.json when the run ends."""
    responses = []
    yield responses
    problems = check_against_openapi(responses)
    assert not problems, "responses that do not match the OpenAPI document:\n" + "\n".join(problems[:20])


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture(scope="session")
def suite_log():
    """The whole suite's application log, and every bearer token sent; no token may be in the log."""
    capture, tokens = LogCapture(), set()
    yield capture, tokens
    text = "\n".join(capture.lines)
    assert capture.lines or not tokens, "requests were made but nothing was logged"
    leaked = [token[:12] + "…" for token in tokens if len(token) >= 16 and token in text]
    signatures = [token[:12] + "…" for token in tokens if token.count(".") == 2 and len(token.split(".")[2]) >= 16
                  and token.split(".")[2] in text]
    assert not leaked and not signatures, f"tokens in the log: {leaked + signatures}"


def remember_token(tokens):
    """A bearer token sent, when it has a secret's shape: an API key's, a JWT's, or the metrics token. Hypothesis,
    sending any header at all, draws strings from the code's own constants too (it once sent the path
    /api/v1/api-keys… as a token, which the log rightly holds as the path it also is): those are no secret."""
    _, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if API_KEY_PATTERN.fullmatch(token) or JWT_PATTERN.fullmatch(token) or \
            token == current_app.config["CHATSTORE"].metrics_token:
        tokens.add(token)


@pytest.fixture
def make_app(base_environ, recorded_responses, suite_log):
    """Build an app with extra environment variables, bound to the test database."""
    capture, tokens = suite_log

    def build(**environ):
        app = create_app({**base_environ, **environ})
        logging.getLogger("chatstore").addHandler(capture)
        app.before_request(lambda: remember_token(tokens))
        # The response as sent, after every hook of the app's own (Flask sends request_finished then).
        request_finished.connect(lambda sender, response, **_: record_response(recorded_responses, response),
                                 app, weak=False)
        return app
    return build


@pytest.fixture
def app(make_app):
    return emptied(make_app())


def emptied(app):
    """The app, every data table emptied first."""
    with models.database.connection_context():
        # A read first, as every request's first statement is: a pooled connection that a PostgreSQL
        # restart (the fault tests) left dead is replaced by it (models.ReconnectingPostgresqlDatabase).
        models.database.execute_sql("SELECT 1")
        for table in DATA_TABLES:
            table.delete().execute()
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def connected(function):
    """Run a test helper on its own connection: requests open and close theirs."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with models.database.connection_context():
            return function(*args, **kwargs)
    return wrapper


@pytest.fixture
def orgs(app):
    """Two orgs, each with a session; the caller's org is `acme`."""
    with models.database.connection_context():
        models.Org.create(id="acme", name="Acme")
        models.Org.create(id="globex", name="Globex")
        models.Session.create(id=SESSION_ID, org="acme", name="main")
        models.Session.create(id=OTHER_SESSION_ID, org="globex", name="theirs")
    return {"own": SESSION_ID, "other": OTHER_SESSION_ID, "missing": MISSING_SESSION_ID}


@pytest.fixture
def keys(orgs):
    """API keys of acme with each capability set, and one of globex."""
    with models.database.connection_context():
        return {
            "read,send": issue_api_key("acme", "read,send", "both"),
            "read": issue_api_key("acme", "read", "reader"),
            "send": issue_api_key("acme", "send", "sender"),
            "other": issue_api_key("globex", "read,send", "theirs"),
        }


@pytest.fixture(params=["api_key", "jwt"])
def tokens(request, keys, identity_provider):
    """Bearer tokens of each capability set, of one kind: every chats test runs with both kinds."""
    if request.param == "api_key":
        return keys
    return {
        "read,send": identity_provider.mint({"org_id": "acme", "org_role": "admin"}),
        "read": identity_provider.mint({"org_id": "acme", "org_role": "viewer"}),
        "send": identity_provider.mint({"org_id": "acme", "org_role": "sender"}),
        "other": identity_provider.mint({"org_id": "globex", "org_role": "owner"}),
    }


@pytest.fixture(params=["api_key", "jwt"])
def worker_headers(request, orgs, identity_provider):
    """A gateway worker's Authorization header: read and sync, as an API key or a login JWT."""
    if request.param == "api_key":
        with models.database.connection_context():
            token = issue_api_key("acme", "read,sync", "worker")
    else:
        token = identity_provider.mint({"org_id": "acme", "org_role": "worker"})
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def headers(tokens):
    return {"Authorization": f"Bearer {tokens['read,send']}"}


@connected
def add_chats(session_id, *chats):
    """Store chats as an import would; each is a dict of contract keys."""
    lines = [json.dumps(chat) for chat in chats]
    with models.database.atomic():
        writes.sync_chats(session_id, chat_rows(lines), [], writes.NEW_CHAT_DEFAULTS)


def apply_changes(copy, page):
    """A feed follower's step: each change replaces its chat in `copy` (jid -> Chat), a tombstone removes it."""
    for change in page["data"]:
        if change["deleted"]:
            copy.pop(change["jid"], None)
        else:
            copy[change["jid"]] = change["chat"]


def chat_url(session_id, jid=None):
    base = f"/api/v1/sessions/{session_id}/chats"
    return base if jid is None else f"{base}/{jid}"


def error_body(code, message, details=None):
    return {"error": {"code": code, "message": message, "details": details or {}}}


@connected
def stored(jid, session_id=SESSION_ID):
    return models.Chat.select().where(models.Chat.session == session_id, models.Chat.jid == jid).dicts().get()
