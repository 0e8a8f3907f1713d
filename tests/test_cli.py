"""The `flask --app app` commands (contract §7) and start-up checks (§6)."""
import datetime
import json
import os
import subprocess
import sys

import peewee
import pytest

import auth
import cli
import models
from store import writes
from conftest import SESSION_ID, add_chats, connected, stored

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLASK = os.path.join(os.path.dirname(sys.executable), "flask")


def flask(*args, env=None, stdin=None):
    """Run a command as a user would, in a separate process."""
    return subprocess.run([FLASK, "--app", "app", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=60)


def test_init_db_is_silent_and_repeatable(database_url):
    for _ in range(2):
        result = flask("init-db", env={"DATABASE_URL": database_url})
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_script_can_set_up_an_org_session_and_key(app, database_url):
    env = {"DATABASE_URL": database_url}
    org = flask("create-org", "Acme Inc", "--id", "org_2abc", env=env)
    assert (org.returncode, org.stdout) == (0, "org_2abc\n")
    session = flask("create-session", "org_2abc", "--name", "Sales", "--phone", "+6281", env=env)
    assert session.returncode == 0
    session_id = session.stdout.strip()
    assert len(session_id) == 26 and session.stdout == session_id + "\n"
    key = flask("create-api-key", "org_2abc", "--capabilities", "read,send", "--name", "crm", env=env)
    assert key.returncode == 0 and auth.is_well_formed_api_key(key.stdout.strip())
    imported = flask("import-chats", session_id, "-", env=env, stdin='{"jid": "1@s.whatsapp.net"}\n')
    assert (imported.returncode, imported.stdout) == (0, "1\n")
    response = app.test_client().get(f"/api/v1/sessions/{session_id}/chats",
                                     headers={"Authorization": f"Bearer {key.stdout.strip()}"})
    assert response.status_code == 200 and len(response.get_json()["data"]) == 1


def test_create_org_generates_an_id_and_refuses_a_duplicate(runner):
    result = runner.invoke(args=["create-org", "Acme"])
    assert result.exit_code == 0 and len(result.stdout.strip()) == 26
    runner.invoke(args=["create-org", "Acme", "--id", "acme"])
    again = runner.invoke(args=["create-org", "Other", "--id", "acme"])
    assert again.exit_code == 1
    assert again.stderr == "Error: org 'acme' already exists\n" and again.stdout == ""


@pytest.mark.parametrize("args, error", [
    (["create-session", "nope"], "Error: no org 'nope'\n"),
    (["create-session", "acme", "--id", "bad"], "Error: --id 'BAD' is not a ULID\n"),
    (["create-session", "acme", "--id", SESSION_ID], f"Error: session {SESSION_ID} already exists\n"),
    (["create-api-key", "nope", "--capabilities", "read"], "Error: no org 'nope'\n"),
    (["list-api-keys", "nope"], "Error: no org 'nope'\n"),
    (["revoke-api-key", "999999"], "Error: no API key 999999\n"),
    (["revoke-api-key", "abc"], "Error: no API key abc\n"),
    (["import-chats", "01J9ZX8K2QHV0M3T6R7P4N5W8E", "-"], "Error: no session 01J9ZX8K2QHV0M3T6R7P4N5W8E\n"),
])
def test_errors_are_one_line_on_stderr_with_status_1(runner, orgs, args, error):
    result = runner.invoke(args=args, input="")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", error)


@pytest.mark.parametrize("capabilities", ["write", "read,owner", ","])
def test_unknown_capabilities_are_refused(runner, orgs, capabilities):
    result = runner.invoke(args=["create-api-key", "acme", "--capabilities", capabilities])
    assert (result.exit_code, result.stdout, result.stderr) == (
        1, "", "Error: --capabilities: use a comma-separated list of read, send, sync, admin\n")


def test_a_key_may_hold_admin_and_expire(runner, orgs):
    made = runner.invoke(args=["create-api-key", "acme", "--capabilities", "read,admin", "--name", "ops",
                               "--expires-in-days", "30"])
    assert made.exit_code == 0 and made.stdout.startswith("csk_")
    [line] = [line.split("\t") for line in runner.invoke(args=["list-api-keys", "acme"]).stdout.splitlines()]
    assert line[1:3] == ["ops", "admin,read"] and line[6].endswith("Z")
    expires = datetime.datetime.fromisoformat(line[6][:-1])
    assert abs((expires - datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)) - datetime.timedelta(days=30)) < datetime.timedelta(minutes=1)


@pytest.mark.parametrize("days", ["0", "-1", "x"])
def test_a_key_expiring_in_no_time_is_refused(runner, orgs, days):
    result = runner.invoke(args=["create-api-key", "acme", "--capabilities", "read", "--expires-in-days", days])
    assert (result.exit_code, result.stdout, result.stderr) == (
        1, "", "Error: --expires-in-days: a whole number of days, 1 or more\n")
    assert runner.invoke(args=["list-api-keys", "acme"]).stdout == ""


def test_create_session_with_given_id(runner, orgs):
    result = runner.invoke(args=["create-session", "acme", "--id", "01j9zx8k2qhv0m3t6r7p4n5w8z"])
    assert (result.exit_code, result.stdout) == (0, "01J9ZX8K2QHV0M3T6R7P4N5W8Z\n")


def test_list_and_revoke_api_keys_never_show_a_key(runner, orgs, keys):
    listed = runner.invoke(args=["list-api-keys", "acme"])
    assert listed.exit_code == 0
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [(line[1], line[2], line[4], line[5]) for line in lines] == [
        ("both", "read,send", "-", "-"), ("reader", "read", "-", "-"), ("sender", "send", "-", "-")]
    assert all(len(line) == 7 and line[3].endswith("Z") and line[6] == "-" for line in lines)
    for key in keys.values():
        assert key not in listed.stdout and key[4:14] not in listed.stdout
    revoked = runner.invoke(args=["revoke-api-key", lines[1][0]])
    assert (revoked.exit_code, revoked.stdout) == (0, "")
    after = runner.invoke(args=["list-api-keys", "acme"]).stdout.splitlines()[1].split("\t")
    assert after[5] != "-"


def test_import_upserts_and_a_line_writes_only_its_keys(runner, orgs):
    first = "\n".join(json.dumps(line) for line in [
        {"jid": "1@s.whatsapp.net", "name": "Ann", "lastMessageAt": 100, "unreadCount": 2, "archived": True,
         "mutedUntil": -1},
        {"jid": "2@g.us"},
    ]) + "\n"
    assert runner.invoke(args=["import-chats", SESSION_ID, "-"], input=first).stdout == "2\n"
    # A saved GET response imports as it is: id, sessionId and type are ignored.
    second = json.dumps({"id": 999, "sessionId": "X", "type": "group", "jid": "1@s.whatsapp.net",
                         "unreadCount": 0}) + "\n\n"
    assert runner.invoke(args=["import-chats", SESSION_ID, "-"], input=second).stdout == "1\n"
    one = stored("1@s.whatsapp.net")
    assert (one["name"], one["last_message_at"], one["unread_count"], one["archived"], one["muted_until"],
            one["type"]) == ("Ann", 100, 0, True, -1, "dm")
    two = stored("2@g.us")
    assert (two["name"], two["last_message_at"], two["unread_count"], two["archived"], two["pinned"],
            two["muted_until"], two["type"]) == (None, None, 0, False, False, None, "group")
    # null clears, and the display order follows.
    runner.invoke(args=["import-chats", SESSION_ID, "-"], input='{"jid": "1@s.whatsapp.net", "lastMessageAt": null}')
    assert stored("1@s.whatsapp.net")["sort_at"] == models.NO_MESSAGE_SORT_AT


def test_import_reads_a_file_and_ignores_pin_limit_and_past_mutes(runner, orgs, tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"jid": f"{n}@s.whatsapp.net", "pinned": True, "mutedUntil": 5}) + "\n"
                            for n in range(5)))
    result = runner.invoke(args=["import-chats", SESSION_ID, str(path)])
    assert (result.exit_code, result.stdout) == (0, "5\n")


def test_import_same_jid_twice_keeps_the_last_line(runner, orgs):
    lines = '{"jid": "1@s.whatsapp.net", "name": "a"}\n{"jid": "1@s.whatsapp.net", "name": "b"}\n'
    assert runner.invoke(args=["import-chats", SESSION_ID, "-"], input=lines).stdout == "2\n"
    assert stored("1@s.whatsapp.net")["name"] == "b"


def test_import_in_many_batches_applies_them_in_order(runner, orgs, monkeypatch):
    """A batch's upsert runs while the next batch is made ready; they still apply one after the other, so a
    jid's later line wins over an earlier batch's, and every chat takes a new position."""
    monkeypatch.setattr(writes, "STAGED_BATCH_SIZE", 2)
    monkeypatch.setattr(writes, "UPSERT_BATCH_SIZE", 2)
    add_chats(SESSION_ID, {"jid": "9@g.us"})
    before = _newest_position()
    lines = [{"jid": "1@s.whatsapp.net", "name": "a"}, {"jid": "2@s.whatsapp.net"}, {"jid": "3@g.us"},
             {"jid": "1@s.whatsapp.net", "unreadCount": 4}, {"jid": "4@g.us"}, {"jid": "1@s.whatsapp.net", "name": "c"},
             {"jid": "9@g.us", "name": "again"}]
    result = runner.invoke(args=["import-chats", SESSION_ID, "-"],
                           input="".join(json.dumps(line) + "\n" for line in lines))
    assert (result.exit_code, result.stdout) == (0, "7\n")
    one = stored("1@s.whatsapp.net")
    assert (one["name"], one["unread_count"]) == ("c", 4)
    assert stored("9@g.us")["name"] == "again"
    positions = _positions()
    assert len(positions) == 5 and len(set(positions.values())) == 5 and min(positions.values()) > before


def test_import_brings_back_a_deleted_chat(runner, orgs, monkeypatch):
    """A tombstoned jid imported again is a live chat, and no longer a tombstone, whichever batch it is in."""
    monkeypatch.setattr(writes, "STAGED_BATCH_SIZE", 2)
    monkeypatch.setattr(writes, "UPSERT_BATCH_SIZE", 2)
    add_chats(SESSION_ID, {"jid": "1@s.whatsapp.net"}, {"jid": "2@g.us"}, {"jid": "3@g.us"})
    _delete(SESSION_ID, ["2@g.us", "3@g.us"])
    lines = "".join(json.dumps({"jid": jid}) + "\n" for jid in ["4@g.us", "5@g.us", "3@g.us"])
    assert runner.invoke(args=["import-chats", SESSION_ID, "-"], input=lines).stdout == "3\n"
    assert sorted(_positions()) == ["1@s.whatsapp.net", "3@g.us", "4@g.us", "5@g.us"]
    assert _tombstoned() == ["2@g.us"]


def test_a_batch_the_database_refuses_mid_import_keeps_nothing(runner, orgs, monkeypatch, refusing_jid):
    """The database refuses the third batch's upsert (while the fourth is being made ready): its error is the
    import's, one line, and the batches before it are rolled back with it."""
    monkeypatch.setattr(writes, "STAGED_BATCH_SIZE", 2)
    monkeypatch.setattr(writes, "UPSERT_BATCH_SIZE", 2)
    add_chats(SESSION_ID, {"jid": "0@s.whatsapp.net", "name": "before"})
    lines = "".join(json.dumps({"jid": f"{n}@s.whatsapp.net", "name": "after"}) + "\n" for n in range(7))
    result = runner.invoke(args=["import-chats", SESSION_ID, "-"], input=lines)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == "Error: database error: no space left on device\n"
    assert _chat_count() == 1 and stored("0@s.whatsapp.net")["name"] == "before"


@pytest.fixture
def refusing_jid():
    """A trigger refusing to store chat 5@s.whatsapp.net, as a full disk would refuse a write."""
    with models.database.connection_context():
        if models.on_postgresql():
            models.database.execute_sql(
                "CREATE FUNCTION refuse_chat() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'no space left on device'; END $$")
            models.database.execute_sql(
                "CREATE TRIGGER refuse_chat BEFORE INSERT ON chat FOR EACH ROW "
                "WHEN (NEW.jid = '5@s.whatsapp.net') EXECUTE FUNCTION refuse_chat()")
        else:
            models.database.execute_sql(
                "CREATE TRIGGER refuse_chat BEFORE INSERT ON chat WHEN NEW.jid = '5@s.whatsapp.net' "
                "BEGIN SELECT RAISE(ABORT, 'no space left on device'); END")
    yield
    with models.database.connection_context():
        models.database.execute_sql("DROP TRIGGER refuse_chat" + (" ON chat" if models.on_postgresql() else ""))
        if models.on_postgresql():
            models.database.execute_sql("DROP FUNCTION refuse_chat()")


@connected
def _newest_position():
    return models.Chat.select(peewee.fn.MAX(models.Chat.change_seq)).scalar()


@connected
def _positions():
    return {chat.jid: chat.change_seq for chat in models.Chat.select().where(models.Chat.session == SESSION_ID)}


@connected
def _delete(session_id, jids):
    with models.database.atomic():
        writes.sync_chats(session_id, [], jids, writes.NEW_CHAT_DEFAULTS)


@connected
def _tombstoned():
    return sorted(tombstone.jid for tombstone in models.ChatTombstone.select())


@pytest.mark.parametrize("name", ["tab\there", "two\nlines", "carriage\rreturn", "back\\slash", "\\N", "\\t",
                                  "", "None", "Ünïcödé ✓ 😀", "zero\u200bwidth", "bell\x07", " spaced "])
def test_import_stores_any_name_exactly(runner, orgs, name):
    """On PostgreSQL an import goes through COPY's text format: what it escapes must come back as sent."""
    line = json.dumps({"jid": "1@s.whatsapp.net", "name": name}) + "\n"
    assert runner.invoke(args=["import-chats", SESSION_ID, "-"], input=line).stdout == "1\n"
    assert stored("1@s.whatsapp.net")["name"] == name


def test_a_bad_line_after_many_batches_keeps_nothing(runner, orgs):
    """Batches already sent (COPY's too) are rolled back when a later line is bad."""
    add_chats(SESSION_ID, {"jid": "0@s.whatsapp.net", "name": "before"})
    good = "".join(json.dumps({"jid": f"{n}@s.whatsapp.net", "name": "after"}) + "\n" for n in range(45_000))
    result = runner.invoke(args=["import-chats", SESSION_ID, "-"], input=good + "{}\n")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == "Error: line 45001: jid: Missing data for required field.; nothing was imported\n"
    assert _chat_count() == 1 and stored("0@s.whatsapp.net")["name"] == "before"


@pytest.mark.parametrize("line", [
    '{"a": 1}', '  {"a": [1, {"b": null}]}\t\r\n', '"x"', "1", "NaN", "[]", "", "   ", "{", "{}}", '{"a": 1} {"a": 2}',
    "1 2", "\ufeff{}", "\x0c{}", "{}\x0c", '{"a": 1,}', '{"a": "\\ud800"}', "[1,\n2]", "\u00a0{}",
])
def test_a_line_is_read_as_json_loads_reads_it(line):
    try:
        expected = ("value", json.loads(line))
    except ValueError:
        expected = ("refused",)
    try:
        got = ("value", cli.json_value(line))
    except ValueError:
        got = ("refused",)
    assert got == expected


@pytest.mark.parametrize("bad_line, reason", [
    ("not json", "not valid JSON"),
    ('{"jid": "1@s.whatsapp.net"} {"jid": "2@s.whatsapp.net"}', "not valid JSON"),
    ('{"jid": "1@s.whatsapp.net"', "not valid JSON"),
    ("[1]", "must be a JSON object"),
    ('{"name": "x"}', "jid: Missing data for required field."),
    ('{"jid": "1@example.com"}', "jid: is not a chat JID (user@s.whatsapp.net, @lid, @g.us, @broadcast or @newsletter)"),
    ('{"jid": "1@s.whatsapp.net", "unreadCount": -1}', "unreadCount: Must be greater than or equal to 0 and less than or equal to 2147483647."),
    ('{"jid": "1@s.whatsapp.net", "archived": "true"}', "archived: must be a JSON boolean: true or false"),
    ('{"jid": "1@s.whatsapp.net", "lastMessageAt": 1.5}', "lastMessageAt: must be a JSON integer"),
    ('{"jid": "1@s.whatsapp.net", "colour": "red"}', "colour: Unknown field."),
])
def test_a_bad_line_fails_the_whole_file_and_keeps_nothing(runner, orgs, bad_line, reason):
    add_chats(SESSION_ID, {"jid": "0@s.whatsapp.net", "name": "before"})
    lines = '{"jid": "0@s.whatsapp.net", "name": "after"}\n' + "".join(
        json.dumps({"jid": f"{n}@s.whatsapp.net"}) + "\n" for n in range(1, 700)) + bad_line + "\n"
    result = runner.invoke(args=["import-chats", SESSION_ID, "-"], input=lines)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"Error: line 701: {reason}; nothing was imported\n"
    assert _chat_count() == 1 and stored("0@s.whatsapp.net")["name"] == "before"


@connected
def _chat_count():
    return models.Chat.select().count()


def test_demo_prints_a_working_key_and_curl_lines(runner, app):
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0
    key = result.stdout.splitlines()[0].split()[-1]
    assert auth.is_well_formed_api_key(key)
    curls = [line for line in result.stdout.splitlines() if line.startswith("curl ")]
    assert len(curls) == 3 and all(key in line for line in curls)
    page = app.test_client().get("/api/v1/sessions/01J9ZX8K2QHV0M3T6R7P4N5W8C/chats?limit=200",
                                 headers={"Authorization": f"Bearer {key}"}).get_json()
    assert len(page["data"]) == 200 and page["nextCursor"]
    assert _chat_count() == 1000
    assert runner.invoke(args=["demo"]).exit_code == 0 and _chat_count() == 1000


@pytest.mark.parametrize("variable, value, message", [
    ("ROLE_CAPABILITIES", "{not json", "ROLE_CAPABILITIES: is not valid JSON"),
    ("MAX_PINNED_CHATS", "-1", "MAX_PINNED_CHATS: must not be negative, got -1"),
    ("MAX_BODY_BYTES", "lots", "MAX_BODY_BYTES: must be a whole number, got 'lots'"),
    ("DATABASE_URL", "mysql://x/y", "DATABASE_URL: unknown database scheme 'mysql'; "
                                    "use sqlite:///path, postgresql://… or postgres://…"),
    ("JWKS_URL", "ftp://x", "JWKS_URL: must be an http:// or https:// URL"),
    ("JWT_ALGORITHMS", "HS256", "JWT_ALGORITHMS: only asymmetric algorithms are accepted (RS256, RS384, RS512, "
                                "PS256, PS384, PS512, ES256, ES256K, ES384, ES512, EdDSA); refused: HS256"),
])
def test_bad_configuration_stops_a_command_with_one_line(variable, value, message):
    result = flask("init-db", env={variable: value})
    assert result.returncode == 1
    assert result.stderr == f"chatstore: bad configuration: {message}\n"
    assert result.stdout == ""


def test_an_unreachable_database_is_one_line():
    result = flask("init-db", env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("Error: database error: ") and result.stderr.count("\n") == 1
