"""The webhook commands of `flask --app app …`: create-webhook, list-webhooks, deliver-webhooks.

Like cli.py's, each prints only its result on stdout; errors are one line on stderr with exit status 1.
"""
import signal

import click
from flask import current_app
from flask.cli import with_appcontext

import models
from api.inputs import signing_key
from push import registry, signing
from push.delivery import Deliverer
from store import webhooks
from sync_schemas import CHANGED_BY


def existing_org(org_id):
    if not models.Org.select().where(models.Org.id == org_id).exists():
        raise click.ClickException(f"no org {org_id!r}")


@click.command("create-webhook")
@click.argument("org_id")
@click.argument("url")
@click.option("--session", "sessions", multiple=True, help="a session to follow (repeat it); default: every one")
@click.option("--changed-by", type=click.Choice(CHANGED_BY), help="only changes of this kind (default: all)")
@click.option("--description", help="what the endpoint is for")
@with_appcontext
def create_webhook(org_id, url, sessions, changed_by, description):
    """Register a webhook endpoint; prints its id, then its secret (the only time it is shown), one a line."""
    config = current_app.config["CHATSTORE"]
    sessions = [session_id.upper() for session_id in sessions] or None
    if sessions is not None and len(set(sessions)) != len(sessions):
        raise click.ClickException("--session: a session is named twice")
    with models.database.connection_context():
        existing_org(org_id)
        problems = registry.problems(config, org_id, {"url": url, "sessions": sessions})
        if problems:
            field, reasons = next(iter(problems.items()))
            raise click.ClickException(f"{field}: {reasons[0]}")
        row, secret = registry.register(config, org_id, url, description, sessions, changed_by)
    click.echo(row["id"])
    click.echo(secret)


@click.command("list-webhooks")
@click.argument("org_id")
@with_appcontext
def list_webhooks(org_id):
    """A tab-separated line per endpoint, oldest first: id, url, enabled or disabled, sessions (* for all),
    changed by (* for all), disabled reason."""
    with models.database.connection_context():
        existing_org(org_id)
        for webhook in reversed(webhooks.page(org_id, None, None)):
            click.echo("\t".join([str(webhook["id"]), webhook["url"],
                                  "enabled" if webhook["enabled"] else "disabled",
                                  ",".join(webhook["sessions"]) if webhook["sessions"] is not None else "*",
                                  webhook["changed_by"] or "*", webhook["disabled_reason"] or "-"]))


@click.command("deliver-webhooks")
@with_appcontext
def deliver_webhooks():
    """Deliver every endpoint's changes until TERM (the Procfile's worker: line)."""
    config = current_app.config["CHATSTORE"]
    with models.database.connection_context():
        try:
            registry.check_secrets_readable(config.webhook_secrets_key)
        except signing.UnreadableSecret as error:
            raise click.ClickException(f"WEBHOOK_SECRETS_KEY: {error}") from None
        key = signing_key()  # the feed's, for the since tokens of a batch
    deliverer = Deliverer(config, key)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: deliverer.stop())
    deliverer.run()


COMMANDS = (create_webhook, list_webhooks, deliver_webhooks)
