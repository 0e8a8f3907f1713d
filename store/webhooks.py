"""An organization's webhook endpoints (contract §14): made, listed, changed, deleted, their secret rotated, a
session's stream restarted, their attempts listed. The one place endpoints are written, for the admin API and
the command line alike; what the delivery process does with them is store/streams.py.

Each endpoint has a stream per session it follows (WebhookStream): delivered up to a position of the session's
change order. A stream starts at the session's latest position when the endpoint starts following it (the
endpoint receives what commits after), or at the start for a session made later (all of it commits after).
"""
import json

from models import Org, Session, Webhook, WebhookDelivery, WebhookStream, database
from store.watch import latest_positions

INSERT_CHUNK = 200  # rows of one INSERT, well under SQLite's parameter limit
# A stream ready to go again at once, nothing in flight, no failure counted.
FRESH = {"message_id": None, "body": None, "batch_end": None, "attempts": 0, "failing_since": None,
         "next_attempt_at": 0}
# Failures forgotten, the batch in flight kept (it goes again, as it was).
FRESH_FAILURES = {"attempts": 0, "failing_since": None, "next_attempt_at": 0}


def _as_dict(webhook):
    """The stored row as the schemas read it: `sessions` a list (or None)."""
    row = dict(webhook)
    row["sessions"] = None if row["sessions"] is None else json.loads(row["sessions"])
    return row


def not_the_orgs(org_id, session_ids):
    """Those of the ids that are not sessions of the org (another org's, or nobody's: the same answer)."""
    owned = {session_id for (session_id,) in
             Session.select(Session.id).where(Session.org == org_id, Session.id.in_(list(session_ids))).tuples()}
    return [session_id for session_id in session_ids if session_id not in owned]


def create(org_id, url, description, sessions, changed_by, sealed_secret, now_ms):
    """Store an endpoint and start its streams; its row. An org a login token names is stored with its first
    endpoint, if `create-org` never made it."""
    with database.atomic():
        Org.insert(id=org_id, name=org_id).on_conflict_ignore().execute()
        webhook = Webhook.create(org=org_id, url=url, description=description,
                                 sessions=None if sessions is None else json.dumps(sessions),
                                 changed_by=changed_by, secret=sealed_secret, created_at=now_ms)
        _start_streams(webhook.id, org_id, sessions)
    return find(org_id, webhook.id)


def _start_streams(webhook_id, org_id, sessions):
    """Streams, from each session's latest position, for those of the endpoint's sessions (every session of
    the org, for None) that have none yet."""
    if sessions is None:
        sessions = [session_id for (session_id,) in Session.select(Session.id).where(Session.org == org_id).tuples()]
    following = {session_id for (session_id,) in WebhookStream.select(WebhookStream.session)
                 .where(WebhookStream.webhook == webhook_id).tuples()}
    new = [session_id for session_id in sessions if session_id not in following]
    latest = latest_positions(new)
    purged = dict(Session.select(Session.id, Session.purged_seq).where(Session.id.in_(new)).tuples()) if new else {}
    rows = [{"webhook": webhook_id, "session": session_id,
             "position": max(latest.get(session_id, 0), purged.get(session_id, 0))} for session_id in new]
    for start in range(0, len(rows), INSERT_CHUNK):
        WebhookStream.insert_many(rows[start:start + INSERT_CHUNK]).on_conflict_ignore().execute()


def find(org_id, webhook_id):
    """The org's endpoint with this id, as a dict, or None (another org's is not found either)."""
    row = Webhook.select().where(Webhook.id == webhook_id, Webhook.org == org_id).dicts().first()
    return None if row is None else _as_dict(row)


def page(org_id, before_id, limit):
    """Up to `limit` of the org's endpoints, newest first, after the endpoint `before_id` (or from the newest)."""
    query = Webhook.select().where(Webhook.org == org_id)
    if before_id is not None:
        query = query.where(Webhook.id < before_id)
    return [_as_dict(row) for row in query.order_by(Webhook.id.desc()).limit(limit).dicts()]


def update(org_id, webhook_id, changes):
    """Change the endpoint's url, description, sessions, changed_by or enabled (those given); its row, or None.

    Following a session it did not: from that session's latest position. No longer following one: its stream
    goes. Enabled again: every stream goes on from where it stopped, at once, its failures forgotten.
    """
    with database.atomic():
        webhook = find(org_id, webhook_id)
        if webhook is None:
            return None
        stored = {name: value for name, value in changes.items() if name != "sessions"}
        if "sessions" in changes:
            sessions = changes["sessions"]
            stored["sessions"] = None if sessions is None else json.dumps(sessions)
            if sessions is not None:
                (WebhookStream.delete()
                 .where(WebhookStream.webhook == webhook_id, WebhookStream.session.not_in(sessions)).execute())
            _start_streams(webhook_id, org_id, sessions)
        if changes.get("enabled") is True and not webhook["enabled"]:
            stored["disabled_reason"] = None
            WebhookStream.update(**FRESH_FAILURES).where(WebhookStream.webhook == webhook_id).execute()
        if changes.get("enabled") is False:
            stored["disabled_reason"] = None
        if stored:
            Webhook.update(**stored).where(Webhook.id == webhook_id).execute()
    return find(org_id, webhook_id)


def delete(org_id, webhook_id):
    """Remove the endpoint, its streams and its log; False when the org has no such endpoint."""
    with database.atomic():
        if find(org_id, webhook_id) is None:
            return False
        WebhookDelivery.delete().where(WebhookDelivery.webhook == webhook_id).execute()
        WebhookStream.delete().where(WebhookStream.webhook == webhook_id).execute()
        Webhook.delete().where(Webhook.id == webhook_id).execute()
    return True


def rotate_secret(org_id, webhook_id, sealed_secret, previous_until_ms):
    """The new secret signs from now on; the current one beside it until `previous_until_ms`. Its row, or None."""
    with database.atomic():
        webhook = Webhook.get_or_none(Webhook.id == webhook_id, Webhook.org == org_id)
        if webhook is None:
            return None
        (Webhook.update(secret=sealed_secret, previous_secret=webhook.secret, previous_secret_until=previous_until_ms)
         .where(Webhook.id == webhook_id).execute())
    return find(org_id, webhook_id)


def replay(webhook_id, session_id, position):
    """The session's stream to this endpoint starts again after `position` (0: from the start). A batch in
    flight is dropped: its attempt, if one is under way, no longer moves the stream."""
    with database.atomic():
        restarted = (WebhookStream.update(position=position, behind_since=None, **FRESH)
                     .where(WebhookStream.webhook == webhook_id, WebhookStream.session == session_id).execute())
        if not restarted:
            WebhookStream.insert(webhook=webhook_id, session=session_id, position=position).execute()


def deliveries_page(webhook_id, before_id, limit):
    """Up to `limit` of the endpoint's attempts, newest first, after the attempt `before_id` (or the newest)."""
    query = WebhookDelivery.select().where(WebhookDelivery.webhook == webhook_id)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    return list(query.order_by(WebhookDelivery.id.desc()).limit(limit).dicts())


def stored_secrets():
    """Every stored secret (current and previous), sealed as stored: start-up checks it can open them."""
    for secret, previous in Webhook.select(Webhook.secret, Webhook.previous_secret).tuples().iterator():
        yield secret
        if previous is not None:
            yield previous
