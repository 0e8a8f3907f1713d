"""The delivery process's side of the webhook streams (store/webhooks.py): which are due, who holds one, the
batch in flight, and what each attempt came to.

A stream is held through a lease: a claim writes a token and an expiry into the streams it takes, in one
transaction that skips rows another process is claiming (PostgreSQL's FOR UPDATE SKIP LOCKED; SQLite has one
writer at a time anyway), and every later write of the holder names its token. So one process at a time works
a stream — one batch in flight per endpoint and session — and a process that dies (SIGKILL) leaves a lease
that simply runs out; another takes the stream then and sends the same batch, under the same webhook-id. A
holder whose lease ran out and was taken finds its token gone and its writes change nothing.

The stream's position moves only when the batch in flight is delivered, to that batch's end: never past a
change not delivered, never back.
"""
from peewee import fn

from models import Webhook, WebhookAttemptCount, WebhookDelivery, WebhookStream, database, on_postgresql
from store.sql import execute, rows_as_dicts

# A change of the session after the stream's position, or purged tombstones it has not seen (s: the stream).
BEHIND = ('(EXISTS (SELECT 1 FROM "chat" WHERE "chat"."session_id" = "s"."session_id" '
          'AND "chat"."change_seq" > "s"."position") '
          'OR EXISTS (SELECT 1 FROM "chat_tombstone" WHERE "chat_tombstone"."session_id" = "s"."session_id" '
          'AND "chat_tombstone"."change_seq" > "s"."position") '
          'OR ("s"."position" > 0 AND "s"."position" < '
          '(SELECT "purged_seq" FROM "session" WHERE "session"."id" = "s"."session_id")))')
DUE = ('SELECT "s"."id" FROM "webhook_stream" AS "s" JOIN "webhook" AS "w" ON "w"."id" = "s"."webhook_id" '
       'WHERE "w"."enabled" AND "s"."next_attempt_at" <= :now '
       'AND ("s"."lease_until" IS NULL OR "s"."lease_until" < :now) '
       'AND ("s"."message_id" IS NOT NULL OR ' + BEHIND + ') '
       'ORDER BY "s"."next_attempt_at", "s"."id" LIMIT :limit')
CLAIMED = ('SELECT "s"."id", "s"."webhook_id", "s"."session_id", "s"."position", "s"."message_id", "s"."body", '
           '"s"."batch_end", "s"."attempts", "s"."failing_since", "s"."lease_token", "w"."url", "w"."secret", '
           '"w"."previous_secret", "w"."previous_secret_until", "w"."changed_by" '
           'FROM "webhook_stream" AS "s" JOIN "webhook" AS "w" ON "w"."id" = "s"."webhook_id" '
           'WHERE "s"."lease_token" = :token')
# Sessions made after an endpoint that follows all of its org's: streams from the start.
NEW_SESSIONS = ('INSERT INTO "webhook_stream" ("webhook_id", "session_id", "position", "attempts", '
                '"next_attempt_at") SELECT "w"."id", "session"."id", 0, 0, 0 FROM "webhook" AS "w" '
                'JOIN "session" ON "session"."org_id" = "w"."org_id" WHERE "w"."sessions" IS NULL '
                'AND NOT EXISTS (SELECT 1 FROM "webhook_stream" AS "s" WHERE "s"."webhook_id" = "w"."id" '
                'AND "s"."session_id" = "session"."id") ON CONFLICT DO NOTHING')
MARK_BEHIND = ('UPDATE "webhook_stream" AS "s" SET "behind_since" = :now WHERE "behind_since" IS NULL '
               'AND ("message_id" IS NOT NULL OR ' + BEHIND + ')')
CAUGHT_UP = ('UPDATE "webhook_stream" AS "s" SET "behind_since" = NULL '
             'WHERE "s"."id" = :stream_id AND "s"."message_id" IS NULL AND NOT ' + BEHIND)
COUNT_ATTEMPT = ('INSERT INTO "webhook_attempt_count" ("outcome", "count") VALUES (:outcome, 1) '
                 'ON CONFLICT ("outcome") DO UPDATE SET "count" = "webhook_attempt_count"."count" + 1')
OLDEST_BEHIND = ('SELECT "w"."id", MIN("s"."behind_since") FROM "webhook" AS "w" '
                 'LEFT JOIN "webhook_stream" AS "s" ON "s"."webhook_id" = "w"."id" GROUP BY "w"."id"')


def follow_new_sessions():
    with database.atomic():  # a transaction, so SQLite's write lock is waited for cooperatively
        execute(NEW_SESSIONS)


def mark_behind(now_ms):
    """Note when each stream was first seen with something to deliver (the oldest-undelivered metric)."""
    with database.atomic():
        execute(MARK_BEHIND, {"now": now_ms})


def claim(token, now_ms, lease_until_ms, limit):
    """Take up to `limit` due streams under the token until `lease_until_ms`; each as a dict with its
    endpoint's url, secrets and filter."""
    if not execute(DUE, {"now": now_ms, "limit": 1}).fetchall():
        return []  # nothing due: no write transaction (on SQLite, no write lock) taken
    with database.atomic():
        due = DUE + (' FOR UPDATE OF "s" SKIP LOCKED' if on_postgresql() else "")
        ids = [row[0] for row in execute(due, {"now": now_ms, "limit": limit}).fetchall()]
        if not ids:
            return []
        # A claimed stream has something to deliver: waiting since now, if it was not already.
        (WebhookStream.update(lease_token=token, lease_until=lease_until_ms,
                              behind_since=fn.COALESCE(WebhookStream.behind_since, now_ms))
         .where(WebhookStream.id.in_(ids)).execute())
    return rows_as_dicts(execute(CLAIMED, {"token": token}))


def _held(stream):
    return (WebhookStream.id == stream["id"]) & (WebhookStream.lease_token == stream["lease_token"])


def fix_batch(stream, message_id, body, batch_end):
    """The batch in flight, fixed before its first attempt; False if the lease was lost meanwhile."""
    with database.atomic():
        return WebhookStream.update(message_id=message_id, body=body, batch_end=batch_end).where(
            _held(stream) & WebhookStream.message_id.is_null()).execute() == 1


def skip_to(stream, position):
    """Move past changes the endpoint does not ask for (its changedBy), with nothing to send."""
    with database.atomic():
        (WebhookStream.update(position=position, lease_token=None, lease_until=None)
         .where(_held(stream) & WebhookStream.message_id.is_null()).execute())


def release(stream):
    """Give the stream back untouched (nothing to send, or the process is stopping)."""
    with database.atomic():
        WebhookStream.update(lease_token=None, lease_until=None).where(_held(stream)).execute()


def release_all(tokens):
    if tokens:
        with database.atomic():
            (WebhookStream.update(lease_token=None, lease_until=None)
             .where(WebhookStream.lease_token.in_(list(tokens))).execute())


def record_delivered(stream, attempt, next_attempt_at, lease_until=None):
    """The batch in flight was delivered: the stream moves to its end, if the batch is still the stream's, and is
    due again at `next_attempt_at`. With `lease_until`, the holder keeps it (to send the next batch at once);
    False when the batch was no longer the stream's (replayed meanwhile: the new start stands)."""
    lease = {"lease_until": lease_until} if lease_until else {"lease_token": None, "lease_until": None}
    with database.atomic():
        _log(stream, attempt, None)
        moved = (WebhookStream.update(position=WebhookStream.batch_end, message_id=None, body=None, batch_end=None,
                                      attempts=0, failing_since=None, next_attempt_at=next_attempt_at, **lease)
                 .where(_held(stream) & (WebhookStream.message_id == stream["message_id"])).execute())
        if moved:
            execute(CAUGHT_UP, {"stream_id": stream["id"]})
        else:
            WebhookStream.update(lease_token=None, lease_until=None).where(_held(stream)).execute()
        return moved == 1


def record_failed(stream, attempt, now_ms, next_attempt_at, disabled_reason):
    """A failed attempt: the stream waits until `next_attempt_at`, or the endpoint is disabled (the batch kept,
    due again as soon as it is enabled)."""
    with database.atomic():
        _log(stream, attempt, None if disabled_reason else next_attempt_at)
        if disabled_reason:
            Webhook.update(enabled=False, disabled_reason=disabled_reason).where(
                Webhook.id == stream["webhook_id"], Webhook.enabled == True).execute()  # noqa: E712 (SQL)
        (WebhookStream.update(attempts=WebhookStream.attempts + 1, lease_token=None, lease_until=None,
                              failing_since=stream["failing_since"] or now_ms,
                              next_attempt_at=0 if disabled_reason else next_attempt_at)
         .where(_held(stream) & (WebhookStream.message_id == stream["message_id"])).execute())
        WebhookStream.update(lease_token=None, lease_until=None).where(_held(stream)).execute()


def _log(stream, attempt, next_attempt_at):
    WebhookDelivery.insert(webhook=stream["webhook_id"], message_id=stream["message_id"],
                           session_id=stream["session_id"], attempt=stream["attempts"] + 1, status=attempt.status,
                           error=attempt.error, duration_ms=attempt.duration_ms, at=attempt.at_ms,
                           next_attempt_at=next_attempt_at).execute()
    execute(COUNT_ATTEMPT, {"outcome": attempt.outcome})


def prune_log(before_ms):
    with database.atomic():
        return WebhookDelivery.delete().where(WebhookDelivery.at < before_ms).execute()


def attempt_counts():
    """{outcome: attempts so far}, across every delivery process."""
    return dict(WebhookAttemptCount.select(WebhookAttemptCount.outcome, WebhookAttemptCount.count).tuples())


def oldest_behind():
    """[(webhook id, when its oldest change not yet delivered was first seen, or None)], every endpoint."""
    return execute(OLDEST_BEHIND).fetchall()
