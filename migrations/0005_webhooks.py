"""Webhook endpoints (contract §13–§14): the endpoints, one delivery stream per endpoint and session, the
log of attempts, and the count of attempts by outcome. Times here are Unix epoch milliseconds."""
from peewee import (BigIntegerField, BooleanField, CharField, ForeignKeyField, IntegerField, Model, TextField)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Org(Base):
        id = CharField(primary_key=True, max_length=255)

    class Session(Base):
        id = CharField(primary_key=True, max_length=26)

    class Webhook(Base):
        org = ForeignKeyField(Org, on_delete="CASCADE")
        url = TextField()
        description = TextField(null=True)
        sessions = TextField(null=True)
        changed_by = CharField(max_length=4, null=True)
        enabled = BooleanField(default=True)
        disabled_reason = TextField(null=True)
        secret = TextField()
        previous_secret = TextField(null=True)
        previous_secret_until = BigIntegerField(null=True)
        created_at = BigIntegerField()

    class WebhookStream(Base):
        webhook = ForeignKeyField(Webhook, on_delete="CASCADE", index=False)
        session = ForeignKeyField(Session, on_delete="CASCADE")
        position = BigIntegerField()
        message_id = CharField(max_length=40, null=True)
        body = TextField(null=True)
        batch_end = BigIntegerField(null=True)
        attempts = IntegerField(default=0)
        failing_since = BigIntegerField(null=True)
        next_attempt_at = BigIntegerField(default=0)
        lease_token = CharField(max_length=40, null=True)
        lease_until = BigIntegerField(null=True)
        behind_since = BigIntegerField(null=True)

        class Meta:
            indexes = ((("webhook", "session"), True),)

    class WebhookDelivery(Base):
        webhook = ForeignKeyField(Webhook, on_delete="CASCADE", index=False)
        message_id = CharField(max_length=40)
        session_id = CharField(max_length=26)
        attempt = IntegerField()
        status = IntegerField(null=True)
        error = TextField(null=True)
        duration_ms = IntegerField()
        at = BigIntegerField()
        next_attempt_at = BigIntegerField(null=True)

        class Meta:
            indexes = ((("webhook", "id"), False), (("at",), False))

    class WebhookAttemptCount(Base):
        outcome = CharField(primary_key=True, max_length=32)
        count = BigIntegerField(default=0)

    db.create_tables([Webhook, WebhookStream, WebhookDelivery, WebhookAttemptCount])
