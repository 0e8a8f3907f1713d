"""The delivery process, `flask --app app deliver-webhooks`: every endpoint's streams sent, batch by batch.

A main thread claims due streams (store/streams.py) and hands each to one of a few sender threads, so a slow
or failing endpoint holds up only its own streams. A sender fixes the stream's next batch if none is in flight
(up to WEBHOOK_BATCH_SIZE of the session's changes in the feed's order, filtered as the endpoint asks), POSTs it
signed (push/signing.py) to a checked address (push/sender.py), and records the attempt: delivered, the stream
moves to the batch's end; failed, it waits (exponential backoff with jitter, 5 s to 1 h) and the same batch goes
again under the same webhook-id, until WEBHOOK_RETRY_HOURS have passed since the first failure, or at once on
410, when the endpoint is disabled with its reason kept.

TERM (or Ctrl-C): no new attempt starts; attempts under way get STOP_GRACE_SECONDS to finish, then the process
gives back what it holds and exits. An attempt cut short was not recorded, so it goes again.
"""
import datetime
import logging
import queue
import random
import threading
import time
import uuid

import orjson
from peewee import DatabaseError, IntegrityError
from ulid import ULID

from api.cursors import encode_since
from models import Session, database
from push import sender, signing
from store import feed, streams
from store.watch import latest_positions
from sync_schemas import MAX_CHANGES_PAGE, dump_change

log = logging.getLogger("chatstore.webhooks")
POLL_SECONDS = 0.1  # how long a change waits, at most, before it is seen
COALESCE_SECONDS = 0.1  # a stream that caught up waits this long before its next batch
HOUSEKEEPING_SECONDS = 1  # new sessions followed, streams behind noted
PRUNE_SECONDS = 600  # the log's old attempts removed
STOP_GRACE_SECONDS = 8  # TERM to exit: within 10 s
SENDERS = 8
MIN_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS = 5, 3600


def now_ms():
    return int(time.time() * 1000)


def backoff_seconds(failures):
    """The wait after the n-th failure in a row: doubling from 5 s to 1 h, with jitter (half to all of it)."""
    ceiling = min(MAX_BACKOFF_SECONDS, MIN_BACKOFF_SECONDS * 2 ** min(failures - 1, 20))
    return max(MIN_BACKOFF_SECONDS, random.uniform(ceiling / 2, ceiling))


def rfc3339(epoch_ms):
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Deliverer:
    """One delivery process: claims, sends, records, until stopped."""

    def __init__(self, config, cursor_key, senders=SENDERS):
        self.config, self.cursor_key = config, cursor_key
        self.senders = max(1, min(senders, config.db_pool_size - 1))
        self.lease_ms = int((2 * config.webhook_timeout_seconds + 10) * 1000)
        self.stopping, self.wake = threading.Event(), threading.Event()
        self.work = queue.Queue()
        self.lock = threading.Lock()
        self.in_flight = {}  # stream id -> the token of the claim that holds it

    def run(self):
        """Deliver until stop() (the command calls it on TERM or Ctrl-C)."""
        for number in range(self.senders):
            threading.Thread(target=self._sender, name=f"webhook-sender-{number}", daemon=True).start()
        log.info("delivering webhooks with %d senders", self.senders)
        next_housekeeping = next_prune = 0
        while not self.stopping.is_set():
            try:
                with database.connection_context():
                    now = time.monotonic()
                    if now >= next_housekeeping:
                        streams.follow_new_sessions()
                        streams.mark_behind(now_ms())
                        next_housekeeping = now + HOUSEKEEPING_SECONDS
                    if now >= next_prune:
                        retention_ms = self.config.webhook_log_retention_days * 86_400_000
                        streams.prune_log(now_ms() - retention_ms)
                        next_prune = now + PRUNE_SECONDS
                    self._claim()
            except DatabaseError as error:
                log.warning("delivery loop: the database failed (%s); trying again", type(error).__name__)
                self.stopping.wait(1)
            self.wake.wait(POLL_SECONDS)
            self.wake.clear()
        self._finish()

    def stop(self):
        self.stopping.set()
        self.wake.set()

    def _claim(self):
        with self.lock:
            free = self.senders - len(self.in_flight)
        if free <= 0:
            return
        token, now = uuid.uuid4().hex, now_ms()
        for stream in streams.claim(token, now, now + self.lease_ms, free):
            with self.lock:
                self.in_flight[stream["id"]] = token
            self.work.put(stream)

    def _finish(self):
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline:
            with self.lock:
                if not self.in_flight:
                    break
            time.sleep(0.05)
        with self.lock:
            abandoned = set(self.in_flight.values())
        if abandoned:
            with database.connection_context():
                streams.release_all(abandoned)
        log.info("delivery stopped (%d attempts abandoned, to go again)", len(abandoned))

    def _sender(self):
        while True:
            stream = self.work.get()
            try:
                with database.connection_context():
                    self.deliver(stream)
            except IntegrityError:  # the endpoint was deleted while its attempt was under way: nothing to record
                log.info("webhook stream %s: its endpoint was deleted during the attempt", stream["id"])
            except Exception:  # a sender must outlive any one stream's failure; the lease runs out, it goes again
                log.exception("webhook stream %s: delivery failed", stream["id"])
            finally:
                with self.lock:
                    self.in_flight.pop(stream["id"], None)
                self.wake.set()

    def deliver(self, stream):
        """Attempt the stream's batch in flight (fixed first, if there is none). While batches go through and
        more changes already wait (a backlog: a large sync), go on with the next at once, holding the lease."""
        while not self.stopping.is_set():
            more = False
            if stream["message_id"] is None:
                more = self._fix_batch(stream)
                if more is None:
                    return
            attempt = sender.post(stream["url"], stream["body"].encode(), self._headers(stream),
                                  self.config.webhook_timeout_seconds, self.config.webhook_allow_private_targets)
            log.info("webhook attempt webhook=%s webhook-id=%s session=%s attempt=%d outcome=%s status=%s ms=%d",
                     stream["webhook_id"], stream["message_id"], stream["session_id"], stream["attempts"] + 1,
                     attempt.outcome, attempt.status if attempt.status is not None else "-", attempt.duration_ms)
            now = now_ms()
            if not attempt.delivered:
                streams.record_failed(stream, attempt, now, now + int(backoff_seconds(stream["attempts"] + 1) * 1000),
                                      self._disabled_reason(stream, attempt, now))
                return
            go_on = more and not self.stopping.is_set()
            # Caught up: the stream's next batch waits COALESCE_SECONDS, so changes arriving back to back (a
            # busy chat) go in one batch instead of a POST each.
            still_ours = streams.record_delivered(stream, attempt, 0 if more else now + int(COALESCE_SECONDS * 1000),
                                                  now + self.lease_ms if go_on else None)
            if not (go_on and still_ours):
                return
            stream.update(position=stream["batch_end"], message_id=None, body=None, batch_end=None, attempts=0,
                          failing_since=None)
        streams.release(stream)

    def _disabled_reason(self, stream, attempt, now):
        if attempt.outcome == "gone":
            return "the endpoint answered 410 Gone"
        failing_ms = now - (stream["failing_since"] or now)
        if failing_ms >= self.config.webhook_retry_hours * 3_600_000:
            return (f"no delivery succeeded for {self.config.webhook_retry_hours:g} hours; "
                    f"the last attempt: {attempt.error}")
        return None

    def _headers(self, stream):
        key = self.config.webhook_secrets_key
        in_use = [signing.unseal(stream["secret"], key)]
        if stream["previous_secret"] is not None and (stream["previous_secret_until"] or 0) > now_ms():
            in_use.append(signing.unseal(stream["previous_secret"], key))
        timestamp = int(time.time())
        return {"Content-Type": "application/json", "User-Agent": "Chatstore-Webhooks/1",
                "webhook-id": stream["message_id"], "webhook-timestamp": str(timestamp),
                "webhook-signature": signing.signature_header(in_use, stream["message_id"], timestamp,
                                                              stream["body"].encode())}

    def _fix_batch(self, stream):
        """Fix the stream's next batch (stored before it is first sent, so every retry sends the same); whether
        more changes wait after it, or None when there is nothing to send."""
        session_id, position = stream["session_id"], stream["position"]
        purged = Session.select(Session.purged_seq).where(Session.id == session_id).scalar() or 0
        if position != feed.START and position < purged:
            # Purged tombstones the endpoint never received: it must resync; the stream goes on from now.
            end = max(latest_positions([session_id]).get(session_id, 0), purged)
            kind, data, more = "chat.resync_required", {"sessionId": session_id}, False
        else:
            batch_size, changed_by = self.config.webhook_batch_size, stream["changed_by"]
            window = (MAX_CHANGES_PAGE if changed_by else batch_size) + 1
            rows = feed.session_changes_after(session_id, position, window)
            picked, end, more = feed.page_of_changes(rows, window - 1, batch_size, changed_by, position)
            if not rows:
                streams.release(stream)
                return None
            if not picked:
                streams.skip_to(stream, end)
                return None
            kind = "chat.changes"
            data = {"sessionId": session_id, "changes": [dump_change(row) for row in picked],
                    "since": None if position == feed.START else encode_since(self.cursor_key, session_id, position),
                    "nextSince": encode_since(self.cursor_key, session_id, end)}
        body = orjson.dumps({"type": kind, "timestamp": rfc3339(now_ms()), "data": data}).decode()
        message_id = f"msg_{ULID()}"
        if not streams.fix_batch(stream, message_id, body, end):
            return None
        stream.update(message_id=message_id, body=body, batch_end=end)
        return more
