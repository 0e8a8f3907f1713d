"""An organization's API keys: made, listed newest first, revoked. The one place keys are written, for the
command line and the admin API alike. Only a key's SHA-256 digest is stored (auth makes the key and its
digest); a key, once made, is never read back."""
from models import ApiKey, Org, database, now_utc


def capabilities_text(capabilities):
    """How a key's capabilities are stored: sorted and comma-joined, as reads.key_may compares them."""
    return ",".join(sorted(set(capabilities)))


def create(org_id, name, capabilities, digest, expires_at=None):
    """Store a key of the org by its digest; the key's stored row (a dict). An org a verified login token names
    is stored with its first key, if `create-org` never made it (its id is the identity provider's)."""
    with database.atomic():
        Org.insert(id=org_id, name=org_id).on_conflict_ignore().execute()
        key = ApiKey.create(org=org_id, name=name, digest=digest, capabilities=capabilities_text(capabilities),
                            expires_at=expires_at)
    return find(org_id, key.id)


def find(org_id, key_id):
    """The org's key with this id, as a dict, or None (another org's key is not found either)."""
    return ApiKey.select().where(ApiKey.id == key_id, ApiKey.org == org_id).dicts().first()


def page(org_id, before_id, limit):
    """Up to `limit` of the org's keys, newest first (by id), after the key `before_id` (or from the newest),
    revoked ones included."""
    query = ApiKey.select().where(ApiKey.org == org_id)
    if before_id is not None:
        query = query.where(ApiKey.id < before_id)
    return list(query.order_by(ApiKey.id.desc()).limit(limit).dicts())


def revoke(org_id, key_id):
    """Revoke the org's key (a key revoked already keeps its time); False when the org has no such key."""
    with database.atomic():
        if find(org_id, key_id) is None:
            return False
        ApiKey.update(revoked_at=now_utc()).where(ApiKey.id == key_id, ApiKey.revoked_at.is_null()).execute()
    return True
