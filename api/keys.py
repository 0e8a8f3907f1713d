"""The org admin's API keys over HTTP (contract §14): made, listed newest first, revoked.

Every view needs the `admin` capability and works on the caller's own org: another org's key id is
simply not found. Each is auth -> schema -> store.keys -> schema, like the chats views.
"""
from flask import Blueprint

from admin_schemas import ApiKeyCreatedSchema, ApiKeyCreateSchema, ApiKeySchema, ListQuerySchema
from api.conditional import created, json_response, no_content
from api.inputs import (json_object_body, listing_page, listing_position, load_or_422, query_or_422,
                        row_id_or_404)
from auth import api_key_digest, current_org, new_api_key, requires
from errors import not_found
from store import keys

bp = Blueprint("api_keys", __name__, url_prefix="/api/v1/api-keys")
create_schema, list_query_schema = ApiKeyCreateSchema(), ListQuerySchema()
key_schema, created_schema = ApiKeySchema(), ApiKeyCreatedSchema()
KEY_NOT_FOUND = "API key not found"


@bp.post("")
@requires("admin", key_first=True)
def create_api_key():
    """Make a key of the caller's org; the answer is the only time the key itself is shown."""
    body = load_or_422(create_schema, json_object_body())
    key = new_api_key()
    row = keys.create(current_org(), body["name"], body["capabilities"], api_key_digest(key), body["expiresAt"])
    return created(created_schema.dump({**row, "key": key}))


@bp.get("")
@requires("admin", key_first=True)
def list_api_keys():
    """A page of the org's keys, newest first, revoked ones included."""
    org_id = current_org()
    query = query_or_422(list_query_schema)
    before_id = listing_position(_scope(org_id), query.get("cursor"))
    rows = keys.page(org_id, before_id, query["limit"] + 1)
    return json_response(listing_page(_scope(org_id), query["limit"], rows, key_schema))


@bp.delete("/<id>")
@requires("admin", key_first=True)
def revoke_api_key(id):  # noqa: A002 (the path's parameter, as /openapi.json names it)
    """Revoke a key of the org, at once for every worker and host; revoking it again changes nothing."""
    key_id = id
    if not keys.revoke(current_org(), row_id_or_404(key_id, KEY_NOT_FOUND)):
        raise not_found(KEY_NOT_FOUND)
    return no_content()


def _scope(org_id):
    """What a key list's cursor is signed over: the org's key list, so no other cursor passes for one."""
    return f"api-keys/{org_id}"
