"""What an admin may register as a webhook endpoint, checked the same way for the API and the command line:
a target it may be sent to (push/targets.py), and sessions that are the org's own."""
import time

import models

from push import signing
from push.targets import RefusedTarget, check_registration
from store import webhooks

UNKNOWN_SESSIONS = "names sessions that are not this organization's"
ROTATION_OVERLAP_MS = 24 * 3600 * 1000  # how long the secret before a rotation keeps signing beside the new one


def now_ms():
    return int(time.time() * 1000)


def problems(config, org_id, fields):
    """{field: [reason]} for the url and sessions among `fields` that can't be registered; {} if none."""
    found = {}
    if "url" in fields:
        try:
            check_registration(fields["url"], config.webhook_allow_private_targets)
        except RefusedTarget as error:
            found["url"] = [f"the URL {error}"]
    if fields.get("sessions") and webhooks.not_the_orgs(org_id, fields["sessions"]):
        found["sessions"] = [UNKNOWN_SESSIONS]  # never which, nor whether another org has them
    return found


def register(config, org_id, url, description, sessions, changed_by):
    """Store a checked endpoint with a new secret; (its row, the secret): the only time the secret is known."""
    secret = signing.new_secret()
    row = webhooks.create(org_id, url, description, sessions, changed_by,
                          signing.seal(secret, config.webhook_secrets_key), now_ms())
    return row, secret


def rotate(config, org_id, webhook_id):
    """A new secret for the endpoint, the current one signing beside it for ROTATION_OVERLAP_MS; (row, secret)
    or (None, None) when the org has no such endpoint."""
    secret = signing.new_secret()
    row = webhooks.rotate_secret(org_id, webhook_id, signing.seal(secret, config.webhook_secrets_key),
                                 now_ms() + ROTATION_OVERLAP_MS)
    return (row, secret) if row is not None else (None, None)


def check_secrets_readable(secrets_key):
    """Raise signing.UnreadableSecret when a stored webhook secret can't be opened with the configured key (or
    without one). Nothing to check before init-db has made the table."""
    if not models.Webhook.table_exists():
        return
    for stored in webhooks.stored_secrets():
        signing.unseal(stored, secrets_key)
