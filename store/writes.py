"""The one write path: PATCH, sync, import and demo change chats only through here.

Every write takes its session's lock and draws its positions in the session's
change order (change_order.py) inside its transaction, before it touches a chat,
so a follower of the changes feed never misses a change.
"""
import functools
import io
import itertools
from concurrent.futures import ThreadPoolExecutor

import models
from models import DRIVER_ERRORS_AS_PEEWEE, Chat, ChatTombstone, database
from store import change_order, reads
from store.sql import execute, rows_as_dicts

API = "api"    # a PATCH
SYNC = "sync"  # a sync, an import, the demo
UPSERT_BATCH_SIZE = 1000
STAGED_BATCH_SIZE = 20_000  # rows per batch on the bulk path (import-chats)
# The columns a write keeps for itself: the row's identity, its place in the display and change orders.
BOOKKEEPING = {"id", "session", "jid", "type", "sort_at", "change_seq", "changed_by"}
# What a new chat holds for each column a sync entry or import line leaves out: the model's defaults.
NEW_CHAT_DEFAULTS = {field.name: field.default for field in Chat._meta.sorted_fields if field.name not in BOOKKEEPING}


class ChatRuleError(Exception):
    """A change WhatsApp itself would refuse; names the field at fault."""

    def __init__(self, field_name, message):
        super().__init__(message)
        self.field_name = field_name
        self.message = message


class ChatGone(Exception):
    """The chat was deleted between its lookup and the write."""


# --- PATCH ------------------------------------------------------------------------

def _lock(query):
    # SQLite has no FOR UPDATE; its IMMEDIATE transactions already serialise writers.
    return query.for_update() if database.obj.for_update else query


def update_chat(chat_id, session_id, changes, max_pinned, expected=None):
    """Write only the columns in `changes`, under WhatsApp's pin rules, atomically; the chat as stored.

    Raises ChatGone when the chat no longer exists, ChatRuleError when a rule refuses the change.

    The session is locked first (by drawing the change position), so two
    concurrent pins are counted one after the other and can't both slip past
    the limit. `expected(chat)`, when given, is called on the locked row before
    anything is written and may raise to refuse the write (If-Match).
    """
    if expected is None and changes.get("pinned") is not True:
        return _update_without_reading(chat_id, session_id, changes)
    with database.atomic():
        [position] = change_order.draw_positions(session_id, 1)
        chat = _lock(Chat.select().where(Chat.id == chat_id)).dicts().first()
        if chat is None:
            raise ChatGone()  # a sync deleted it since the caller found it
        if expected is not None:
            expected(chat)
        if changes.get("pinned") is True and not chat["pinned"]:
            _check_can_pin(chat, changes, max_pinned)
        written = {**changes, "change_seq": position, "changed_by": API}
        Chat.update(written).where(Chat.id == chat_id).execute()
    # The row was read under the lock and only these columns were written, so
    # this is the row as stored, without reading it back.
    return {**chat, **written}


def _update_without_reading(chat_id, session_id, changes):
    """No rule needs the row first (no pin to count, no If-Match to compare): the position drawn and the chat
    written and returned in one statement, with the session's lock held only that long.

    The position is drawn when the new row is computed, before the chat's row
    is locked: the same order as every other write (session, then chat).
    """
    assignments = "".join(f'"{column}" = :{column}, ' for column in sorted(changes))
    text = ('UPDATE "chat" SET ' + assignments + '"change_seq" = ' + change_order.next_position_sql()
            + ', "changed_by" = :changed_by WHERE "chat"."id" = :chat_id RETURNING ' + reads.CHAT_COLUMNS)
    params = {**changes, "session_id": session_id, "changed_by": API, "chat_id": chat_id}
    if models.on_postgresql():
        rows = rows_as_dicts(execute(text, params))  # one statement needs no transaction of its own
    else:
        with database.atomic():  # takes SQLite's write lock before the position is read
            rows = rows_as_dicts(execute(text, params))  # fetched before the commit, which ends SQLite's RETURNING
    if not rows:
        raise ChatGone()
    return rows[0]


def _check_can_pin(chat, changes, max_pinned):
    if changes.get("archived", chat["archived"]):
        raise ChatRuleError("pinned", "an archived chat can't be pinned; "
                            "send \"archived\": false with it to unarchive and pin")
    pinned_now = (Chat.select().where(Chat.session == chat["session"], Chat.pinned == True)  # noqa: E712
                  .count())
    if pinned_now >= max_pinned:
        raise ChatRuleError("pinned", f"at most {max_pinned} chats can be pinned at once; "
                            "unpin one first")


# --- sync, import, demo ------------------------------------------------------------

def prepare_bulk_import():
    """For a bulk import, before its transaction: a larger page cache for this SQLite connection (the index
    updates), and its temporary tables in memory (the staging table holds one batch at a time)."""
    if isinstance(database.obj, models.PooledSqliteDatabase):
        database.execute_sql("PRAGMA cache_size = -65536")  # KiB: 64 MiB
        database.execute_sql("PRAGMA temp_store = MEMORY")  # refused inside a transaction


def sync_chats(session_id, rows, delete_jids, new_chat_defaults, bulk=False):
    """Upsert `rows`, then delete `delete_jids`, in the caller's transaction; (rows upserted, chats deleted, position).

    Rows are column dicts (see upsert_chats) and may be a stream of any length.
    The position returned follows everything this write did. `bulk` stages
    the rows (COPY on PostgreSQL) and upserts them on a thread, outside a gevent
    worker only: there a thread is a greenlet, and psycopg2 can't COPY on a
    connection that waits cooperatively.
    """
    position = change_order.lock_session(session_id)  # before any chat is touched
    upserted, position = upsert_chats(session_id, rows, new_chat_defaults, position, staged=bulk)
    deleted, position = delete_chats(session_id, delete_jids, position)
    return upserted, deleted, position


def upsert_chats(session_id, rows, new_chat_defaults, position, staged=False):
    """Insert or update chats by (session, jid), each row writing only its own keys; (row count, last position).

    A new chat takes new_chat_defaults for the keys its row leaves out, an
    existing one keeps what it has. Consecutive rows with the same keys go in
    one statement; a jid seen twice in a batch starts a new one, since one
    INSERT … ON CONFLICT can't touch a row twice (so the later row wins key by key).
    """
    has_tombstones = ChatTombstone.select().where(ChatTombstone.session == session_id).exists()
    if staged:
        return _staged_upsert_batches(session_id, _batches(rows, STAGED_BATCH_SIZE), new_chat_defaults,
                                      has_tombstones, position)
    count = 0
    for keys, batch in _batches(rows, UPSERT_BATCH_SIZE):
        count += len(batch)
        position = _upsert_batch(session_id, keys, batch, new_chat_defaults, has_tombstones)
    return count, position


def _batches(rows, batch_size):
    """(keys, rows): runs of consecutive rows with the same keys and no jid twice, at most batch_size each."""
    batch, batch_keys, batch_jids = [], None, set()
    for row in rows:
        if "last_message_at" in row:
            row["sort_at"] = models.sort_at_for(row["last_message_at"])  # the row is this write's own
        keys = tuple(sorted(row))
        if batch and (keys != batch_keys or row["jid"] in batch_jids or len(batch) >= batch_size):
            yield batch_keys, batch
            batch, batch_jids = [], set()
        batch.append(row)
        batch_keys = keys
        batch_jids.add(row["jid"])
    if batch:
        yield batch_keys, batch


def _upsert_batch(session_id, keys, rows, new_chat_defaults, has_tombstones):
    positions = change_order.draw_positions(session_id, len(rows))
    if has_tombstones:
        # A jid is live or tombstoned, never both: stored again, it is no longer deleted.
        _delete_where_jid_in(ChatTombstone, session_id, [row["jid"] for row in rows])
    columns, defaults = _written_columns(keys, new_chat_defaults)
    columns = ("change_seq",) + columns
    values = ([position, *_written_values(session_id, defaults, row)] for position, row in zip(positions, rows))
    if models.on_postgresql():
        database.execute_sql(_values_upsert_sql(database.obj.param, keys, columns, len(rows)),
                             list(itertools.chain.from_iterable(values)))
    else:
        # SQLite runs one row's statement for each row faster than one statement of many rows (1M rows: 10.0 s
        # against 13.7 with 1,000 a statement, in sqlite3 alone): nothing to parse or send, and its VALUES
        # list is a co-routine with each row's parameters copied in.
        with DRIVER_ERRORS_AS_PEEWEE:
            database.cursor().executemany(_values_upsert_sql(database.obj.param, keys, columns, 1), values)
    return positions[-1]


def _written_columns(keys, new_chat_defaults):
    """The columns an upsert of rows with these keys writes (its place in the change order aside), and each
    carried column's default: every row writes its keys, a new chat taking the defaults for the rest."""
    insert_defaults = dict(new_chat_defaults, sort_at=models.NO_MESSAGE_SORT_AT)
    carried = tuple(sorted(set(insert_defaults) | set(keys)))
    return ("session_id", "changed_by") + carried, {name: insert_defaults.get(name) for name in carried}


def _written_values(session_id, defaults, row):
    """A row's values for _written_columns' columns. The merged dict keeps the defaults' order, since every key
    of the row is one of theirs: its values are the columns' (half the time of a lookup per column)."""
    return [session_id, SYNC, *{**defaults, **row}.values()]


@functools.lru_cache(maxsize=64)
def _values_insert_sql(placeholder, table, columns):
    """INSERT of one row's columns (for executemany)."""
    return f'INSERT INTO "{table}" ({_column_list(columns)}) VALUES ({", ".join([placeholder] * len(columns))})'


@functools.lru_cache(maxsize=64)
def _values_upsert_sql(placeholder, keys, columns, row_count):
    """INSERT … VALUES … ON CONFLICT for row_count rows, written once per shape.

    Built as text rather than with peewee's query builder: at a million rows,
    building a node per value cost more than the database's own work.
    """
    row = "(" + ", ".join([placeholder] * len(columns)) + ")"
    return f'INSERT INTO "chat" ({_column_list(columns)}) VALUES {", ".join([row] * row_count)} {_on_conflict(keys)}'


# --- the bulk path (import-chats) ---------------------------------------------------------

STAGING_TABLE = "chat_staging"


def _staged_upsert_batches(session_id, batches, new_chat_defaults, has_tombstones, position):
    """The same upsert, each batch staged in a temporary table and upserted from there in one statement;
    (row count, last position).

    Staging is the cheap part: COPY on PostgreSQL (a 1,000-row VALUES list cost it more to parse and plan than
    to write), one prepared insert per row on SQLite, into a table with no index. The upsert from it, which
    updates the chat table's indexes, is most of the database's work, and it runs on a thread while the next
    batch is made ready: both drivers let go of the GIL for the whole statement, so Python's work (parsing
    lines, making the next batch) overlaps it. The next batch is staged only after it, so batches still apply
    one after the other and a later line still wins.
    """
    cursor = database.cursor()
    postgresql = models.on_postgresql()
    with DRIVER_ERRORS_AS_PEEWEE:
        _create_staging_table(cursor, postgresql)
    count, upserting = 0, None
    # Leaving the block, on an error too, waits for an upsert still running: the transaction then rolls back whole.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk-upsert") as writer:
        for keys, rows in batches:
            count += len(rows)
            columns, defaults = _written_columns(keys, new_chat_defaults)
            values = [_written_values(session_id, defaults, row) for row in rows]
            if postgresql:
                values = "".join([_copy_line(row_values) for row_values in values])
            if upserting is not None:
                upserting.result()  # raises the upsert's error, if it failed
            with DRIVER_ERRORS_AS_PEEWEE:
                position = _stage(cursor, postgresql, session_id, columns, values)
            upserting = writer.submit(_upsert_staged, cursor, postgresql, session_id, keys, columns,
                                      has_tombstones)
        if upserting is not None:
            upserting.result()
    with DRIVER_ERRORS_AS_PEEWEE:
        if postgresql and count:
            cursor.execute("SELECT currval('change_position')")  # this transaction's last draw: its last upsert's
            position = cursor.fetchone()[0]
        if not postgresql:
            cursor.execute(f'DROP TABLE "{STAGING_TABLE}"')  # its last batch, gone with it
    return count, position


def _create_staging_table(cursor, postgresql):
    """The empty staging table: the chat table's columns, no index. PostgreSQL drops it at commit (PgBouncer's
    transaction pooling is fine with that); on SQLite the import drops it, or its rollback does."""
    if postgresql:
        cursor.execute(f'CREATE TEMPORARY TABLE IF NOT EXISTS "{STAGING_TABLE}" ON COMMIT DROP AS '
                       'SELECT * FROM "chat" WITH NO DATA')
    else:
        cursor.execute(f'CREATE TEMPORARY TABLE IF NOT EXISTS "{STAGING_TABLE}" AS SELECT * FROM "chat" WHERE 0')


def _stage(cursor, postgresql, session_id, columns, values):
    """The batch, alone, in the staging table; the last position drawn for it (None on PostgreSQL).

    PostgreSQL's upsert draws each row's position itself (nextval); SQLite's rows take theirs here, as one
    writer holding the database's write lock may (change_order.py).
    """
    if postgresql:
        cursor.execute(f'TRUNCATE "{STAGING_TABLE}"')
        cursor.copy_expert(f'COPY "{STAGING_TABLE}" ({_column_list(columns)}) FROM STDIN', io.StringIO(values))
        return None
    positions = change_order.draw_positions(session_id, len(values))
    cursor.execute(f'DELETE FROM "{STAGING_TABLE}"')
    cursor.executemany(_values_insert_sql("?", STAGING_TABLE, ("change_seq",) + columns),
                       ([position, *row_values] for position, row_values in zip(positions, values)))
    return positions[-1]


def _upsert_staged(cursor, postgresql, session_id, keys, columns, has_tombstones):
    """The staged batch upserted, each row taking its position; a tombstone of a jid stored again removed."""
    position = change_order.POSITION_PER_ROW_HOLDING_LOCK if postgresql else '"change_seq"'
    with DRIVER_ERRORS_AS_PEEWEE:
        if has_tombstones:
            cursor.execute(f'DELETE FROM "chat_tombstone" WHERE "session_id" = {database.obj.param} '
                           f'AND "jid" IN (SELECT "jid" FROM "{STAGING_TABLE}")', [session_id])
        # WHERE true: SQLite would read the ON of ON CONFLICT as a join's without it.
        cursor.execute(f'INSERT INTO "chat" ({_column_list(columns)}, "change_seq") '
                       f'SELECT {_column_list(columns)}, {position} FROM "{STAGING_TABLE}" WHERE true '
                       + _on_conflict(keys))


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_line(values):
    """A row in COPY's text format. Written inline, value by value, since it runs for every value of an import:
    only a text holding a backslash or a control character needs escaping."""
    return "\t".join([
        "\\N" if value is None else "t" if value is True else "f" if value is False
        else (value.translate(_COPY_ESCAPES) if "\\" in value or not value.isprintable() else value)
        if type(value) is str else str(value)
        for value in values]) + "\n"


def _column_list(columns):
    return ", ".join(f'"{name}"' for name in columns)


def _on_conflict(keys):
    # On conflict, only the keys the lines carried are written, and the chat's new place in the change order.
    written = [key for key in keys if key not in ("jid", "type")] + ["change_seq", "changed_by"]
    return ('ON CONFLICT ("session_id", "jid") DO UPDATE SET '
            + ", ".join(f'"{key}" = EXCLUDED."{key}"' for key in written))


def delete_chats(session_id, jids, position):
    """Delete the session's chats with these jids, leaving a tombstone each; (chats deleted, last position)."""
    if not jids:
        return 0, position
    # Drawn before the chats go: on SQLite the next position is read off the session's stored ones, and a
    # tombstone must come after the position its chat had (some may go unused: gaps are harmless).
    positions = change_order.draw_positions(session_id, len(jids))
    deleted = [row[0] for row in _delete_where_jid_in(Chat, session_id, jids, returning=Chat.jid)]
    if not deleted:
        return 0, position
    positions = positions[:len(deleted)]
    now = models.now_utc()
    (ChatTombstone.insert_many([{"session": session_id, "jid": jid, "change_seq": position, "deleted_at": now}
                                for position, jid in zip(positions, deleted)])
     .on_conflict(conflict_target=[ChatTombstone.session, ChatTombstone.jid],
                  preserve=[ChatTombstone.change_seq, ChatTombstone.deleted_at])
     .execute())
    return len(deleted), positions[-1]


def _delete_where_jid_in(model, session_id, jids, returning=None):
    query = model.delete().where(model.session == session_id, model.jid.in_(jids))
    if returning is None:
        return query.execute()
    return list(query.returning(returning).tuples())
