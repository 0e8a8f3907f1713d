"""API keys may expire: `expires_at`, Unix epoch milliseconds, null for a key that does not (all keys made
before this migration)."""
from peewee import BigIntegerField


def up(migrator, db):
    migrator.migrate(migrator.add_column("api_key", "expires_at", BigIntegerField(null=True)))
