"""The org admin's webhook endpoints over HTTP (contract §14): made, listed, read, changed, deleted, their secret
rotated, their attempts listed, a session's stream replayed.

Every view needs the `admin` capability and works on the caller's own org: another org's endpoint id is simply
not found, before any body is read (404 before 413 and 422). Each is auth -> schema -> store -> schema.
The web processes never send a webhook: the delivery process does (push/delivery.py).
"""
from flask import Blueprint, current_app

from admin_schemas import (DeliverySchema, ListQuerySchema, ReplayAcceptedSchema, ReplaySchema, WebhookCreateSchema,
                           WebhookSchema, WebhookUpdateSchema, WebhookWithSecretSchema)
from api.conditional import created, json_response, no_content
from api.inputs import (json_object_body, listing_page, listing_position, load_or_422, query_or_422,
                        row_id_or_404, since_position)
from auth import current_org, requires
from errors import not_found, validation_error
from push import registry
from store import webhooks

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks")
create_schema, update_schema, replay_schema = WebhookCreateSchema(), WebhookUpdateSchema(), ReplaySchema()
list_query_schema, webhook_schema, with_secret_schema = ListQuerySchema(), WebhookSchema(), WebhookWithSecretSchema()
delivery_schema, replay_accepted_schema = DeliverySchema(), ReplayAcceptedSchema()
WEBHOOK_NOT_FOUND = "webhook not found"
# The API's field names, as stored.
STORED_NAMES = {"url": "url", "description": "description", "sessions": "sessions", "changedBy": "changed_by",
                "enabled": "enabled"}


def _config():
    return current_app.config["CHATSTORE"]


def _checked(org_id, fields):
    """422 naming `url` or `sessions` when they can't be registered."""
    problems = registry.problems(_config(), org_id, fields)
    if problems:
        raise validation_error(problems)


@bp.post("")
@requires("admin", key_first=True)
def create_webhook():
    """Register an endpoint of the caller's org; the answer is the only time its secret is shown."""
    org_id = current_org()
    body = load_or_422(create_schema, json_object_body())
    _checked(org_id, body)
    row, secret = registry.register(_config(), org_id, body["url"], body["description"], body["sessions"],
                                    body["changedBy"])
    return created(with_secret_schema.dump({**row, "secret": secret}))


@bp.get("")
@requires("admin", key_first=True)
def list_webhooks():
    """A page of the org's endpoints, newest first."""
    org_id = current_org()
    query = query_or_422(list_query_schema)
    scope = f"webhooks/{org_id}"
    rows = webhooks.page(org_id, listing_position(scope, query.get("cursor")), query["limit"] + 1)
    return json_response(listing_page(scope, query["limit"], rows, webhook_schema))


def _webhook_id_or_404(id):  # noqa: A002 (the path's parameter)
    return row_id_or_404(id, WEBHOOK_NOT_FOUND)


def _webhook_or_404(id):  # noqa: A002
    webhook = webhooks.find(current_org(), _webhook_id_or_404(id))
    if webhook is None:
        raise not_found(WEBHOOK_NOT_FOUND)
    return webhook


@bp.get("/<id>")
@requires("admin", key_first=True)
def get_webhook(id):  # noqa: A002 (the path's parameter, as /openapi.json names it)
    return json_response(webhook_schema.dump(_webhook_or_404(id)))


@bp.patch("/<id>")
@requires("admin", key_first=True)
def update_webhook(id):  # noqa: A002
    """Change the fields sent; `enabled: true` resumes delivery where it stopped."""
    org_id, webhook = current_org(), _webhook_or_404(id)
    body = load_or_422(update_schema, json_object_body())
    _checked(org_id, body)
    row = webhooks.update(org_id, webhook["id"], {STORED_NAMES[name]: value for name, value in body.items()})
    if row is None:  # deleted meanwhile
        raise not_found(WEBHOOK_NOT_FOUND)
    return json_response(webhook_schema.dump(row), conditional=False)


@bp.delete("/<id>")
@requires("admin", key_first=True)
def delete_webhook(id):  # noqa: A002
    """Remove the endpoint: nothing more is sent to it."""
    if not webhooks.delete(current_org(), _webhook_id_or_404(id)):
        raise not_found(WEBHOOK_NOT_FOUND)
    return no_content()


@bp.post("/<id>/rotate-secret")
@requires("admin", key_first=True)
def rotate_secret(id):  # noqa: A002
    """A new secret, shown this once; the old one keeps signing beside it for 24 hours."""
    row, secret = registry.rotate(_config(), current_org(), _webhook_id_or_404(id))
    if row is None:
        raise not_found(WEBHOOK_NOT_FOUND)
    return json_response(with_secret_schema.dump({**row, "secret": secret}), conditional=False)


@bp.get("/<id>/deliveries")
@requires("admin", key_first=True)
def list_deliveries(id):  # noqa: A002
    """A page of the endpoint's attempts, newest first."""
    webhook = _webhook_or_404(id)
    query = query_or_422(list_query_schema)
    scope = f"webhooks/{webhook['org']}/{webhook['id']}/deliveries"
    rows = webhooks.deliveries_page(webhook["id"], listing_position(scope, query.get("cursor")), query["limit"] + 1)
    return json_response(listing_page(scope, query["limit"], rows, delivery_schema))


@bp.post("/<id>/replay")
@requires("admin", key_first=True)
def replay(id):  # noqa: A002
    """Restart one session's stream to this endpoint after `since` (null: from the start)."""
    org_id, webhook = current_org(), _webhook_or_404(id)
    body = load_or_422(replay_schema, json_object_body())
    session_id = body["sessionId"].upper()
    followed = webhook["sessions"] is None or session_id in webhook["sessions"]
    if webhooks.not_the_orgs(org_id, [session_id]) or not followed:
        raise validation_error({"sessionId": ["is not a session of this organization that this webhook follows"]})
    position = since_position(session_id, body["since"])
    webhooks.replay(webhook["id"], session_id, position)
    return created(replay_accepted_schema.dump({"sessionId": session_id, "since": body["since"]}), status=202)
