"""Orgs, sessions, API keys, chats, settings; the display-order index."""
import datetime

from peewee import (BigAutoField, BigIntegerField, BooleanField, CharField, DateTimeField,
                    ForeignKeyField, IntegerField, Model, TextField)

NO_MESSAGE_SORT_AT = -(2 ** 63)


def up(migrator, db):
    # Frozen copies of the models as this migration made them.
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Org(Base):
        id = CharField(primary_key=True, max_length=255)
        name = TextField()
        created_at = DateTimeField(default=datetime.datetime.utcnow)

    class Session(Base):
        id = CharField(primary_key=True, max_length=26)
        org = ForeignKeyField(Org, on_delete="CASCADE")
        name = TextField(null=True)
        phone = TextField(null=True)
        created_at = DateTimeField(default=datetime.datetime.utcnow)

    class ApiKey(Base):
        org = ForeignKeyField(Org, on_delete="CASCADE")
        name = TextField(null=True)
        digest = CharField(unique=True, max_length=64)
        capabilities = TextField()
        created_at = DateTimeField(default=datetime.datetime.utcnow)
        last_used_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)

    class Chat(Base):
        id = BigAutoField()
        session = ForeignKeyField(Session, on_delete="CASCADE", index=False)
        jid = TextField()
        type = CharField(max_length=16)
        name = TextField(null=True)
        last_message_at = BigIntegerField(null=True)
        sort_at = BigIntegerField(default=NO_MESSAGE_SORT_AT)
        unread_count = IntegerField(default=0)
        archived = BooleanField(default=False)
        pinned = BooleanField(default=False)
        muted_until = BigIntegerField(null=True)

        class Meta:
            indexes = (
                (("session", "jid"), True),
                # The list walks this index in display order: pinned first,
                # newest message first, id last, all descending.
                (("session", "pinned", "sort_at", "id"), False),
            )

    class Setting(Base):
        name = CharField(primary_key=True, max_length=64)
        value = TextField()

    db.create_tables([Org, Session, ApiKey, Chat, Setting])
