"""How a page of chats is read (contract §2): through an index, never a scan or sort; the head never cut by the
limit; rows put in display order whatever order they come in; a refused read never reads the body."""
import os
import random

import peewee
import pytest

import models
from auth import api_key_digest
from conftest import OTHER_SESSION_ID, SESSION_ID, add_chats
from store import feed, pages, reads
from store import sql as store_sql
from test_listing import many_chats


def _plan(sql, params):
    cursor = store_sql.execute(("EXPLAIN QUERY PLAN " if _is_sqlite() else "EXPLAIN ") + sql, params)
    return "\n".join(" ".join(str(part) for part in row) for row in cursor.fetchall())


def _is_sqlite():
    return isinstance(models.database.obj, peewee.SqliteDatabase)


@pytest.mark.parametrize("owner", [reads.Owner(org_id="acme"), reads.Owner(key_digest="x" * 64, capability="read")])
@pytest.mark.parametrize("shape", ["one chat", "session only", "changes"])
def test_no_read_scans_the_chats(app, orgs, owner, shape):
    """Every read reaches chats through an index, whatever the table's size (a body SQLite folded into the
    join once scanned every chat to find none)."""
    add_chats(SESSION_ID, *many_chats(200))
    add_chats(OTHER_SESSION_ID, *many_chats(200, seed=8))
    with models.database.connection_context():
        models.database.execute_sql("ANALYZE")
        if not _is_sqlite():
            # On a small table PostgreSQL may rightly prefer a scan; what must hold is that an index can serve.
            models.database.execute_sql("SET enable_seqscan = off")
        if shape == "one chat":
            sql, params = reads.find_chat_statement(owner, SESSION_ID, "1@s.whatsapp.net")
        elif shape == "session only":
            sql, params = reads.session_state_statement(owner, SESSION_ID)
        else:
            sql, params = feed.changes_statement(owner, SESSION_ID, 5, 10)
        plan = _plan(sql, params)
        if not _is_sqlite():
            models.database.execute_sql("RESET enable_seqscan")
    assert "SCAN chat" not in plan and "Seq Scan on chat" not in plan, plan


def test_deep_page_walks_the_display_index_without_scan_or_sort(app, orgs):
    # Enough rows, spread over two sessions, that PostgreSQL's planner prefers the index.
    add_chats(SESSION_ID, *many_chats(20_000))
    add_chats(OTHER_SESSION_ID, *many_chats(5_000, seed=8))
    plans = []
    with models.database.connection_context():
        if not _is_sqlite():
            models.database.execute_sql("ANALYZE chat")
        else:
            models.database.execute_sql("ANALYZE")
        deep = models.Chat.select().where(models.Chat.session == SESSION_ID).order_by(
            *pages.display_order()).offset(15_000).limit(1).dicts().get()
        for owner in (reads.Owner(org_id="acme"), reads.Owner(key_digest="x" * 64, capability="read")):
            plans.append(_plan(*pages.page_statement(owner, SESSION_ID, {}, pages.display_position(deep["pinned"], deep["sort_at"], deep["id"]), 51)))
    for plan in plans:
        _assert_walks_the_display_index(plan)


def _assert_walks_the_display_index(plan):
    assert "chat_session_id_pinned_sort_at_id" in plan, plan
    if _is_sqlite():
        # Nothing is sorted: the page comes off the index in order, merged after the head's row.
        assert "TEMP B-TREE" not in plan, plan
        assert "SCAN chat\n" not in plan + "\n" and "SCAN t1\n" not in plan + "\n", plan
    else:
        # The page's LIMITs (the parameter's over the bound's) sit right on the backward index walk, so nothing
        # is ever sorted.
        assert "Seq Scan on chat" not in plan, plan
        lines = [line.strip() for line in plan.splitlines()]
        limit = next(n for n, line in enumerate(lines) if line.startswith("->  Limit"))
        assert lines[limit + 1].startswith("->  Limit"), plan
        assert lines[limit + 2].startswith("->  Index Scan Backward using chat_session_id_pinned_sort_at_id"), plan
        assert "Sort" not in plan, plan


def chats_of(page):
    """A page read with its rows as dicts by column name."""
    return page._replace(rows=[dict(zip(pages.ROW_COLUMNS, row)) for row in page.rows])


@pytest.mark.parametrize("owner_kind", ["jwt", "key"])
def test_the_limit_never_cuts_the_head_even_below_pinned_chats(app, orgs, keys, owner_kind):
    """The head's row and the page share one statement (and on SQLite one LIMIT): with pinned chats first and a
    limit of exactly the session's chats, the head is still there and every chat comes back, in display order."""
    add_chats(SESSION_ID, *many_chats(12))
    owner = reads.Owner(org_id="acme") if owner_kind == "jwt" else \
        reads.Owner(key_digest=api_key_digest(keys["read"]), capability="read")
    with models.database.connection_context():
        expected = [chat["id"] for chat in models.Chat.select().where(models.Chat.session == SESSION_ID)
                    .order_by(*pages.display_order()).dicts()]
        for limit in (1, 2, 12):
            found = chats_of(pages.list_chats(owner, SESSION_ID, {}, None, limit))
            assert found.head["owned_session"] == SESSION_ID
            assert [chat["id"] for chat in found.rows] == expected[:limit]
    assert sum(chat["pinned"] for chat in found.rows) == 1 and found.rows[0]["pinned"]


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"),
                    reason="SQLite's page statement has an ORDER BY of its own (pages.page_statement)")
def test_a_page_is_put_in_order_whatever_order_the_rows_come_in(app, orgs, monkeypatch):
    """SQL promises no order for a UNION ALL without an ORDER BY: the head's row and the page's rows are told
    apart by the jid, and the page is sorted into display order, whichever order the driver hands them over."""
    add_chats(SESSION_ID, *many_chats(30))
    owner = reads.Owner(org_id="acme")
    with models.database.connection_context():
        expected = chats_of(pages.list_chats(owner, SESSION_ID, {}, None, 20))
        real_execute = models.database.obj.execute_read

        def shuffled(sql, params=None):
            rows = real_execute(sql, params)
            random.Random(7).shuffle(rows)
            return rows
        monkeypatch.setattr(models.database.obj, "execute_read", shuffled)
        found_rows = pages.list_chats(owner, SESSION_ID, {}, None, 20)
    found = chats_of(found_rows)
    assert found.head == expected.head and found.head["owned_session"] == SESSION_ID
    assert [chat["id"] for chat in found.rows] == [chat["id"] for chat in expected.rows]
    assert len(found.rows) == 20
    positions = [pages.row_position(row) for row in found_rows.rows]
    assert positions == sorted(positions, reverse=True)


def _statements_work(sql, params):
    """How much the database did for a statement: SQLite's virtual machine steps, or PostgreSQL's plan as run
    (EXPLAIN ANALYZE marks each node it never ran)."""
    if not _is_sqlite():
        rows = store_sql.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + sql, params)
        return "\n".join(row[0] for row in rows.fetchall())
    steps = [0]

    def count():
        steps[0] += 1
        return 0
    connection = models.database.connection()
    connection.set_progress_handler(count, 1)
    try:
        store_sql.execute(sql, params).fetchall()
    finally:
        connection.set_progress_handler(None, 1)
    return steps[0]


@pytest.mark.parametrize("owner", [reads.Owner(org_id="globex"),
                                   reads.Owner(key_digest="x" * 64, capability="read")])
@pytest.mark.parametrize("shape", ["page", "changes"])
def test_a_refused_read_never_reads_the_body(app, orgs, owner, shape):
    """Another org's session, or a key that does not exist: the gate is settled before the body is read, so the
    database does the same little work whatever the page size, and never touches a chat."""
    add_chats(SESSION_ID, *many_chats(400))
    work = []
    with models.database.connection_context():
        for size in (10, 200):
            if shape == "page":
                work.append(_statements_work(*pages.page_statement(owner, SESSION_ID, {}, None, size)))
            else:
                work.append(_statements_work(*feed.changes_statement(owner, SESSION_ID, 0, size)))
    if _is_sqlite():
        assert work[0] == work[1] and work[0] < 300, work
    else:
        for plan in work:
            scans = [line for line in plan.splitlines() if " on chat" in line or "on chat_tombstone" in line]
            assert scans and all("never executed" in line for line in scans), plan
