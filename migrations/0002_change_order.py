"""The change order (contract §10): a per-session counter, each chat's position in it, and tombstones.

Existing chats take their id as their position, so a client following the feed
from nothing sees every chat already stored.
"""
import datetime

from peewee import BigIntegerField, CharField, DateTimeField, ForeignKeyField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Session(Base):
        id = CharField(primary_key=True, max_length=26)

    class ChatTombstone(Base):
        session = ForeignKeyField(Session, on_delete="CASCADE", index=False)
        jid = TextField()
        change_seq = BigIntegerField()
        deleted_at = DateTimeField(default=datetime.datetime.utcnow)

        class Meta:
            indexes = (
                (("session", "jid"), True),
                (("session", "change_seq"), False),
                # purge-tombstones walks the old ones.
                (("deleted_at",), False),
            )

    migrator.migrate(
        # The last position drawn in the session: writers draw from it under its row lock (see writes.py).
        migrator.add_column("session", "change_seq", BigIntegerField(default=0)),
        # The position of the newest tombstone purge-tombstones removed: a `since` before it may have missed it.
        migrator.add_column("session", "purged_seq", BigIntegerField(default=0)),
        migrator.add_column("chat", "change_seq", BigIntegerField(default=0)),
        migrator.add_column("chat", "changed_by", CharField(max_length=4, default="sync")),
    )
    db.execute_sql('UPDATE "chat" SET "change_seq" = "id"')
    db.execute_sql('UPDATE "session" SET "change_seq" = COALESCE('
                   '(SELECT MAX("chat"."change_seq") FROM "chat" WHERE "chat"."session_id" = "session"."id"), 0)')
    migrator.migrate(migrator.add_index("chat", ("session_id", "change_seq"), False))
    db.create_tables([ChatTombstone])
