"""The `flask --app app …` commands.

Each prints only its result on stdout (an id, a key, a count) so scripts can
capture it; errors go to stderr as one line with exit status 1.
"""
import contextlib
import datetime
import functools
import gc
import json
import random
import sys
import time

import click
from flask import current_app
from flask.cli import with_appcontext
from marshmallow import ValidationError
from peewee import DatabaseError, IntegrityError
from ulid import ULID

import models
from api.lines import load_line
from auth import api_key_digest, new_api_key
from config import CAPABILITIES
from push import commands as webhook_commands
from push.commands import existing_org
from schemas import is_ulid
from store import feed, keys, writes
from store.read_ahead import read_ahead

DEMO_ORG_ID = "demo"
DEMO_SESSION_ID = "01J9ZX8K2QHV0M3T6R7P4N5W8C"
DEMO_CHAT_COUNT = 1000


def register(app):
    for command in COMMANDS + webhook_commands.COMMANDS:
        app.cli.add_command(command)


def one_line_database_errors(callback):
    """A database that can't be reached (or refuses a statement) is one line on stderr, not a traceback."""
    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except DatabaseError as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise click.ClickException(f"database error: {reason}") from None
    return wrapper


def _iso(moment):
    return moment.replace(microsecond=0).isoformat() + "Z" if moment else "-"


@click.command("init-db")
def init_db():
    """Create or upgrade the schema; safe to run again and again."""
    models.migrate()


@click.command("create-org")
@click.argument("name")
@click.option("--id", "org_id", help="the org id, e.g. the identity provider's (default: a new ULID)")
def create_org(name, org_id):
    """Create an organization; prints its id."""
    org_id = org_id if org_id is not None else str(ULID())
    if not org_id.strip():
        raise click.ClickException("--id must not be empty")
    with models.database.connection_context():
        try:
            with models.database.atomic():
                models.Org.create(id=org_id, name=name)
        except IntegrityError:
            raise click.ClickException(f"org {org_id!r} already exists") from None
    click.echo(org_id)


@click.command("create-session")
@click.argument("org_id")
@click.option("--name", help="a label for the attached number")
@click.option("--phone", help="the attached phone number")
@click.option("--id", "session_id", help="the session id, a ULID (default: a new one)")
def create_session(org_id, name, phone, session_id):
    """Create a session (one attached WhatsApp number) in an org; prints its id."""
    session_id = (session_id or str(ULID())).upper()
    if not is_ulid(session_id):
        raise click.ClickException(f"--id {session_id!r} is not a ULID")
    with models.database.connection_context():
        existing_org(org_id)
        try:
            with models.database.atomic():
                models.Session.create(id=session_id, org=org_id, name=name, phone=phone)
        except IntegrityError:
            raise click.ClickException(f"session {session_id} already exists") from None
    click.echo(session_id)


def _capabilities(text):
    capabilities = sorted({part.strip() for part in text.split(",") if part.strip()})
    unknown = [cap for cap in capabilities if cap not in CAPABILITIES]
    if unknown or not capabilities:
        raise click.ClickException(f"--capabilities: use a comma-separated list of {', '.join(CAPABILITIES)}")
    return ",".join(capabilities)


def _expiry(days):
    """Epoch milliseconds `days` from now."""
    if not days.isdigit() or int(days) < 1:
        raise click.ClickException("--expires-in-days: a whole number of days, 1 or more")
    return int((time.time() + int(days) * 86400) * 1000)


def issue_api_key(org_id, capabilities, name, expires_at=None):
    """Store a new key's digest and return the key itself, which is never stored."""
    key = new_api_key()
    keys.create(org_id, name, capabilities.split(","), api_key_digest(key), expires_at)
    return key


@click.command("create-api-key")
@click.argument("org_id")
@click.option("--capabilities", required=True, help="comma-separated: " + ", ".join(CAPABILITIES))
@click.option("--name", help="what the key is for")
@click.option("--expires-in-days", help="the key stops working after this many days")
def create_api_key(org_id, capabilities, name, expires_in_days):
    """Create an API key; prints it, the only time it is shown."""
    capabilities = _capabilities(capabilities)
    expires_at = None if expires_in_days is None else _expiry(expires_in_days)
    with models.database.connection_context():
        existing_org(org_id)
        key = issue_api_key(org_id, capabilities, name, expires_at)
    click.echo(key)


@click.command("list-api-keys")
@click.argument("org_id")
def list_api_keys(org_id):
    """A tab-separated line per key: id, name, capabilities, created, last used, revoked, expires."""
    with models.database.connection_context():
        existing_org(org_id)
        for key in reversed(keys.page(org_id, None, None)):
            expires = "-" if key["expires_at"] is None else _iso(
                datetime.datetime.fromtimestamp(key["expires_at"] / 1000, datetime.timezone.utc).replace(tzinfo=None))
            click.echo("\t".join([str(key["id"]), key["name"] or "-", key["capabilities"], _iso(key["created_at"]),
                                  _iso(key["last_used_at"]), _iso(key["revoked_at"]), expires]))


@click.command("revoke-api-key")
@click.argument("key_id")
def revoke_api_key(key_id):
    """Revoke a key; every worker refuses it from the next request on."""
    if not key_id.isdigit():
        raise click.ClickException(f"no API key {key_id}")  # ids are what list-api-keys prints
    with models.database.connection_context():
        key = models.ApiKey.get_or_none(models.ApiKey.id == key_id)
        if key is None:
            raise click.ClickException(f"no API key {key_id}")
        with models.database.atomic():
            (models.ApiKey.update(revoked_at=models.now_utc())
             .where(models.ApiKey.id == key_id, models.ApiKey.revoked_at.is_null()).execute())


def chat_rows(lines):
    """Parse JSON Lines of Chat objects into column dicts; a bad line raises with its number."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            chat = json_value(line)
            if not isinstance(chat, dict):
                raise ValidationError("must be a JSON object")
            row = load_line(chat)
        except ValueError:
            raise _bad_line(number, "not valid JSON") from None
        except ValidationError as error:
            raise _bad_line(number, _one_line(error.messages)) from None
        yield row


JSON_WHITESPACE = " \t\n\r"
_scan_json_value = json.JSONDecoder().scan_once


def json_value(line):
    """json.loads(line), without the two Python layers around its C scanner (a million lines: ~0.8 s): one JSON
    value, alone on the line but for JSON's whitespace; ValueError otherwise."""
    text = line.strip(JSON_WHITESPACE)
    try:
        value, end = _scan_json_value(text, 0)
    except StopIteration:  # the scanner's word for "no value starts here"
        raise ValueError("not a JSON value") from None
    if end != len(text):
        raise ValueError("more than one JSON value")
    return value


def _bad_line(number, reason):
    return click.ClickException(f"line {number}: {reason}; nothing was imported")


def _one_line(reason):
    if isinstance(reason, dict):
        return "; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in sorted(reason.items()))
    if isinstance(reason, list):
        return " ".join(map(str, reason))
    return str(reason)


def import_rows(session_id, rows, progress=False):
    """All or nothing: every row is upserted, or none is. Rows are streamed, never all in memory.

    The same write path as POST …/sync, so imported chats show in the changes feed.
    """
    counted = _Counter(rows, progress)
    writes.prepare_bulk_import()
    with _cycle_collector_paused(), models.database.atomic():
        writes.sync_chats(session_id, counted, [], writes.NEW_CHAT_DEFAULTS, bulk=True)
    counted.finish()
    return counted.count


@contextlib.contextmanager
def _cycle_collector_paused():
    """Python's cycle collector off for a bulk import. Each line makes a dict and a list that reference counting
    frees once their batch is written; the collector, run every few hundred of them, walked the batches in flight
    again and again (1,000,000 lines: 13.7 -> 12.2 s, the same peak memory)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Counter:
    """Counts the rows going through; with progress, a line on stderr every PROGRESS_EVERY rows."""

    PROGRESS_EVERY = 50_000

    def __init__(self, rows, progress):
        self.rows, self.count, self.progress = rows, 0, progress

    def __iter__(self):
        for row in self.rows:
            self.count += 1
            if self.progress and self.count % self.PROGRESS_EVERY == 0:
                click.echo(f"\rimported {self.count:,} lines…", err=True, nl=False)
            yield row

    def finish(self):
        if self.progress and self.count >= self.PROGRESS_EVERY:
            click.echo(f"\rimported {self.count:,} lines.   ", err=True)


@click.command("import-chats")
@click.argument("session_id")
@click.argument("file", type=click.File("r", encoding="utf-8"))
def import_chats(session_id, file):
    """Upsert JSON Lines of Chat objects into a session; prints the count."""
    session_id = session_id.upper()
    with models.database.connection_context():
        if not is_ulid(session_id) or models.Session.get_or_none(models.Session.id == session_id) is None:
            raise click.ClickException(f"no session {session_id}")
        try:
            # Progress only on a terminal: stdout carries just the count, for scripts.
            count = import_rows(session_id, read_ahead(chat_rows(file)), progress=sys.stderr.isatty())
        except UnicodeDecodeError:
            raise click.ClickException("the file is not UTF-8; nothing was imported") from None
    click.echo(count)


def demo_chats(count):
    """A believable spread of chats: every type, some pinned, archived, muted or silent."""
    rng = random.Random(42)
    newest = 1_764_000_000_000
    for n in range(count):
        server = "s.whatsapp.net" if n < 10 else rng.choices(
            ["s.whatsapp.net", "g.us", "lid", "broadcast", "newsletter"], weights=[70, 22, 4, 2, 2])[0]
        yield {
            "jid": f"62812{n:07d}@{server}",
            "name": None if n % 17 == 0 else f"Demo chat {n}",
            "lastMessageAt": None if n % 29 == 0 else newest - rng.randrange(0, 90 * 86_400_000),
            "unreadCount": rng.choice([0, 0, 0, 1, 2, 5, 12]),
            "archived": n % 11 == 0 and n > 3,
            "pinned": n < 3,
            "mutedUntil": -1 if n % 13 == 0 else None,
        }


@click.command("demo")
@click.option("--base-url", default="http://localhost:8000", help="where the server answers")
def demo(base_url):
    """Schema, an org, a session, ~1,000 chats and a read,send key; prints the key and curl lines."""
    models.migrate()
    with models.database.connection_context():
        with models.database.atomic():
            models.Org.insert(id=DEMO_ORG_ID, name="Demo org").on_conflict_ignore().execute()
            models.Session.insert(id=DEMO_SESSION_ID, org=DEMO_ORG_ID, name="Demo number",
                                  phone="+62 812 0000 0000").on_conflict_ignore().execute()
            if models.Session.get_by_id(DEMO_SESSION_ID).org_id != DEMO_ORG_ID:
                raise click.ClickException(f"session {DEMO_SESSION_ID} exists in another org; "
                                           "use a fresh database for the demo")
        lines = (json.dumps(chat) for chat in demo_chats(DEMO_CHAT_COUNT))
        import_rows(DEMO_SESSION_ID, chat_rows(lines))
        key = issue_api_key(DEMO_ORG_ID, "read,send", "demo")
    chats_url = f"{base_url}/api/v1/sessions/{DEMO_SESSION_ID}/chats"
    click.echo(f"""API key (shown once): {key}

curl -H 'Authorization: Bearer {key}' '{chats_url}?limit=3'
curl -H 'Authorization: Bearer {key}' '{chats_url}/628120000001@s.whatsapp.net'
curl -X PATCH -H 'Authorization: Bearer {key}' -d '{{"archived": true}}' '{chats_url}/628120000001@s.whatsapp.net'""")


@click.command("purge-tombstones")
@with_appcontext
def purge_tombstones():
    """Remove tombstones older than TOMBSTONE_RETENTION_DAYS; prints how many."""
    days = current_app.config["CHATSTORE"].tombstone_retention_days
    with models.database.connection_context():
        click.echo(feed.purge_tombstones(days))


COMMANDS = (init_db, create_org, create_session, create_api_key, list_api_keys, revoke_api_key, import_chats,
            purge_tombstones, demo)
for _command in COMMANDS:
    _command.callback = one_line_database_errors(_command.callback)
