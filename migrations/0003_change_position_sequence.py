"""Change positions no longer counted in the session row (change_order.py): PostgreSQL draws them from one
sequence under a per-session advisory lock, made here; SQLite reads them off the stored ones and needs nothing.

The sequence starts past every position already stored, in any session, so
each session's next position is larger than all of its earlier ones and a
`since` a client already holds stays valid.

Upgrading a running deployment: the processes of the build before this one
count through the session row (and on PostgreSQL lock it), so they and this
build's processes don't agree on the next position. Stop the old processes before the new ones
start writing (the Procfile's release step runs this migration before the new
web processes start; stop the old ones then), or have feed followers start
again from nothing after a rollout that overlapped.
"""
from peewee import PostgresqlDatabase


def up(migrator, db):
    if not isinstance(db, PostgresqlDatabase):
        return
    db.execute_sql('CREATE SEQUENCE IF NOT EXISTS "change_position" AS BIGINT')
    db.execute_sql(
        "SELECT setval('change_position', GREATEST(1, "
        '(SELECT COALESCE(MAX("change_seq"), 0) FROM "session"), '
        '(SELECT COALESCE(MAX("purged_seq"), 0) FROM "session"), '
        '(SELECT COALESCE(MAX("change_seq"), 0) FROM "chat"), '
        '(SELECT COALESCE(MAX("change_seq"), 0) FROM "chat_tombstone")))')
