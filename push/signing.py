"""Webhook secrets: made, sealed at rest, and used to sign a delivery as Standard Webhooks prescribes.

A secret is `whsec_` and 24 random bytes in base64, shown to the admin once. It is stored sealed with Fernet
when WEBHOOK_SECRETS_KEY is set (make a key with
`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`), as it is otherwise.
A sealed secret is stored with the prefix `fernet:`, so start-up can tell one it can't read (a lost or wrong key)
and refuse to run instead of sending unverifiable deliveries.
"""
import base64
import datetime
import secrets

from cryptography.fernet import Fernet, InvalidToken
from standardwebhooks.webhooks import Webhook as Signer

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
SEALED_PREFIX = "fernet:"


class UnreadableSecret(Exception):
    """A stored secret that the configured WEBHOOK_SECRETS_KEY (or its absence) can't open."""


def new_secret():
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def seal(secret, secrets_key):
    """The secret as stored: sealed with the key when there is one."""
    if secrets_key is None:
        return secret
    return SEALED_PREFIX + Fernet(secrets_key.encode("ascii")).encrypt(secret.encode("ascii")).decode("ascii")


def unseal(stored, secrets_key):
    """The secret of a stored value, or raise UnreadableSecret."""
    if not stored.startswith(SEALED_PREFIX):
        return stored
    if secrets_key is None:
        raise UnreadableSecret("a webhook secret is sealed, and WEBHOOK_SECRETS_KEY is not set")
    try:
        return Fernet(secrets_key.encode("ascii")).decrypt(stored[len(SEALED_PREFIX):].encode("ascii")).decode("ascii")
    except InvalidToken:
        raise UnreadableSecret("a webhook secret can't be opened with WEBHOOK_SECRETS_KEY") from None


def signature_header(secrets_in_use, message_id, timestamp_seconds, body):
    """`webhook-signature`: a `v1,<signature>` for each secret in use (two during a rotation), space-separated."""
    moment = datetime.datetime.fromtimestamp(timestamp_seconds, datetime.timezone.utc)
    return " ".join(Signer(secret).sign(message_id, moment, body) for secret in secrets_in_use)
