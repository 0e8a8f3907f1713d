"""The hot reads as prepared statements on PostgreSQL (prepared.py); on SQLite, the text as it is."""
import decimal
import os
import re
import types

import peewee
import psycopg2
import pytest

import models
from store import pages
from store import prepared
from store import sql as store_sql
from store import reads
from conftest import SESSION_ID, add_chats
from counting import round_trips  # noqa: F401  (a fixture)
from test_listing import many_chats

ON_POSTGRESQL = os.environ.get("TEST_DATABASE_URL", "").startswith("postgres")
postgresql_only = pytest.mark.skipif(not ON_POSTGRESQL, reason="PostgreSQL's prepared statements")
ACME = reads.Owner(org_id="acme")
JID = "1@s.whatsapp.net"


def _find():
    found = reads.find_chat(ACME, SESSION_ID, JID)
    assert found.session_owned and [chat["jid"] for chat in found.rows] == [JID]


def _name(execute):
    return execute.split()[1].split("(")[0]


@pytest.mark.skipif(ON_POSTGRESQL, reason="SQLite's statements")
def test_sqlite_sends_the_read_as_it_is(orgs, round_trips):
    add_chats(SESSION_ID, {"jid": JID})
    _find()  # the process's read connection opened (its pragmas sent)
    round_trips.clear()
    _find()
    assert len(round_trips) == 1 and round_trips[0].startswith("SELECT "), round_trips


@postgresql_only
def test_a_read_is_prepared_with_its_first_use_then_executed(orgs, round_trips):
    add_chats(SESSION_ID, {"jid": JID})
    with models.database.connection_context():
        round_trips.clear()
        _find()
        _find()
    [first, second] = round_trips
    name = _name(second)
    assert name.startswith(prepared.NAME_PREFIX)
    assert first.startswith(f"PREPARE {name} AS SELECT ") and f"; EXECUTE {name}(%(session_id)s, " in first, round_trips
    assert second.startswith(f"EXECUTE {name}(%(session_id)s, "), round_trips


@postgresql_only
def test_a_statement_the_server_does_not_have_is_prepared_again(orgs, round_trips):
    """As behind PgBouncer, when the connection lands on another server connection, or after DISCARD ALL."""
    add_chats(SESSION_ID, {"jid": JID})
    with models.database.connection_context():
        _find()
        models.database.execute_sql("DEALLOCATE ALL")
        round_trips.clear()
        _find()
        _find()
    assert [sql.split()[0] for sql in round_trips] == ["EXECUTE", "PREPARE", "EXECUTE"], round_trips


@postgresql_only
def test_a_statement_the_server_has_already_is_executed(orgs, round_trips):
    """As behind PgBouncer, when another client prepared it on the server connection this one lands on."""
    add_chats(SESSION_ID, {"jid": JID})
    with models.database.connection_context():
        _find()
        prepared._prepared_by_connection.clear()  # this connection forgets, the server doesn't
        round_trips.clear()
        _find()
        _find()
    assert [sql.split()[0] for sql in round_trips] == ["PREPARE", "EXECUTE", "EXECUTE"], round_trips


@postgresql_only
def test_a_read_inside_a_transaction_is_sent_as_text(orgs, round_trips):
    add_chats(SESSION_ID, {"jid": JID})
    with models.database.connection_context():
        with models.database.atomic():
            round_trips.clear()
            _find()
    assert [sql.split()[0] for sql in round_trips] == ["SELECT", "COMMIT"], round_trips


@postgresql_only
def test_a_read_on_a_connection_the_server_dropped_runs_again_on_a_new_one(orgs, round_trips):
    add_chats(SESSION_ID, {"jid": JID})
    models.database.connect()  # as a request does (connect in before_request, close in teardown)
    try:
        _find()
        dropped = models.database.connection()
        with psycopg2.connect(os.environ["TEST_DATABASE_URL"]) as other, other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [dropped.get_backend_pid()])
        found = pages.list_chats(ACME, SESSION_ID, {}, None, 2)  # a text this connection never prepared
        assert [dict(zip(pages.ROW_COLUMNS, row))["jid"] for row in found.rows] == [JID]
        assert models.database.connection() is not dropped
        _find()  # prepared on the dropped connection, not on the new one
    finally:
        models.database.close()


@postgresql_only
def test_a_statement_whose_column_changed_type_is_prepared_anew(app):
    """A migration under running workers: EXECUTE answers "cached plan must not change result type" (0A000),
    and the read is prepared again and answers in the new type, instead of failing until the connection goes."""
    with models.database.connection_context():
        models.database.execute_sql('CREATE TABLE "scratch_prepared" ("x" integer)')
        try:
            models.database.execute_sql('INSERT INTO "scratch_prepared" VALUES (7)')
            sql = 'SELECT "x" FROM "scratch_prepared" WHERE "x" = %(x)s'
            assert models.database.execute_read(sql, {"x": 7}) == [(7,)]
            # Widened, as a migration would: the statement's result changes type, its parameter still compares.
            models.database.execute_sql('ALTER TABLE "scratch_prepared" ALTER COLUMN "x" TYPE numeric')
            assert models.database.execute_read(sql, {"x": 7}) == [(decimal.Decimal(7),)]
            assert models.database.execute_read(sql, {"x": 7}) == [(decimal.Decimal(7),)]
        finally:
            models.database.execute_sql('DROP TABLE "scratch_prepared"')


@postgresql_only
@pytest.mark.parametrize("read", ["one chat", "page", "deep page"])
def test_each_hot_read_runs_on_a_generic_plan_that_walks_an_index(orgs, read):
    """Planned once: after PostgreSQL's five custom plans, the statement keeps its generic plan, and that plan
    walks an index with no sort, so a page reads only the rows it returns."""
    add_chats(SESSION_ID, *many_chats(20_000))
    owner = reads.Owner(key_digest="x" * 64, capability="read")
    after = [False, 1_700_000_000_000 + 25 * 1000, 10_000] if read == "deep page" else None
    owner.now_ms = 0
    if read == "one chat":
        text, params = reads.find_chat_statement(owner, SESSION_ID, JID)
    else:
        text, params = pages.page_statement(owner, SESSION_ID, {}, after, 51)
    sql = store_sql.driver_text(text, postgresql=True)
    with models.database.connection_context():
        models.database.execute_sql("ANALYZE chat")
        for _ in range(6):
            models.database.execute_read(sql, params)
        name, execute, _ = prepared.statement_texts(sql)
        plan = "\n".join(row[0] for row in models.database.execute_sql("EXPLAIN " + execute, params).fetchall())
    index = "chat_session_id_jid" if read == "one chat" else "chat_session_id_pinned_sort_at_id"
    assert f"Index Scan{' Backward' if read != 'one chat' else ''} using {index}" in plan, plan
    assert re.search(r"Index Cond: \(+\(session_id\)::text = \$", plan), plan  # generic: the parameter, not its value
    assert "Sort" not in plan and "Seq Scan on chat" not in plan, plan


def test_statement_names_follow_the_text():
    one, other = 'SELECT %(x)s AS "a", %(y)s AS "b", %(x)s AS "c"', 'SELECT %(x)s AS "b"'
    name, execute, prepare_and_execute = prepared.statement_texts(one)
    assert name == prepared.statement_texts(one)[0] != prepared.statement_texts(other)[0]
    assert execute == f"EXECUTE {name}(%(x)s, %(y)s)"
    assert prepare_and_execute == f'PREPARE {name} AS SELECT $1 AS "a", $2 AS "b", $1 AS "c"; EXECUTE {name}(%(x)s, %(y)s)'


@pytest.mark.parametrize("sql, read", [
    ("SELECT 1", True), ("  select 1", True), (f"EXECUTE {prepared.NAME_PREFIX}ab(1)", True),
    (f"PREPARE {prepared.NAME_PREFIX}ab AS SELECT 1; EXECUTE {prepared.NAME_PREFIX}ab", True),
    ("EXECUTE someone_elses(1)", False), ('UPDATE "chat" SET "name" = NULL', False), ("BEGIN", False),
])
def test_only_reads_count_as_reads(sql, read):
    assert prepared.is_read(sql) is read


class ScriptedDatabase(prepared.PreparedReads):
    """Answers each statement as scripted, a SQLSTATE to fail with or None to succeed, as PgBouncer's server
    connections might one after the other; records the first word of each statement sent."""

    def __init__(self, answers):
        self.answers, self.sent = list(answers), []

    def in_transaction(self):
        return False

    def connection(self):
        return self

    def execute_sql(self, sql, params):
        self.sent.append(sql.split()[0])
        answer = self.answers.pop(0)
        if answer is not None:
            error = peewee.ProgrammingError("scripted")
            error.orig = types.SimpleNamespace(pgcode=answer)
            raise error
        return types.SimpleNamespace(fetchall=lambda: "rows")


@pytest.mark.parametrize("remembered, answers, sent", [
    (False, [None], ["PREPARE"]),
    (True, [None], ["EXECUTE"]),
    (True, ["26000", None], ["EXECUTE", "PREPARE"]),
    (False, ["42P05", None], ["PREPARE", "EXECUTE"]),
    # The retry met a server connection answering the other way again: the text itself.
    (False, ["42P05", "26000", None], ["PREPARE", "EXECUTE", "SELECT"]),
    (True, ["26000", "42P05", None], ["EXECUTE", "PREPARE", "SELECT"]),
    (True, ["0A000", None], ["EXECUTE", "DEALLOCATE"]),
])
def test_each_answer_of_the_server_leads_to_the_next_statement(remembered, answers, sent):
    database = ScriptedDatabase(answers)
    sql = 'SELECT %(x)s AS "scripted"'
    if remembered:
        prepared._remember(database, prepared.statement_texts(sql)[0])
    assert database.execute_read(sql, {"x": 1}) == "rows"
    assert database.sent == sent
    # Remembered once a prepared statement answered (the text as it is says nothing of the server's).
    assert prepared._has_prepared(database, prepared.statement_texts(sql)[0]) is (remembered or sent[-1] != "SELECT")


def test_any_other_failure_is_the_callers():
    database = ScriptedDatabase(["57014"])  # query_canceled, say
    with pytest.raises(peewee.ProgrammingError):
        database.execute_read('SELECT %(x)s AS "other"', {"x": 1})
    assert database.sent == ["PREPARE"]
