"""create_app wires the parts together; `app` is what gunicorn serves."""
import logging
import sys

from flask import Flask, current_app
from peewee import DatabaseError

import cli
import models
from api import chats, docs, keys, sync, webhooks
from api.cors import enable_cors
from api.json_provider import OrjsonProvider
from api.openapi import build_openapi
from auth import VerifiedTokenCache
from config import ConfigError, load_config
from errors import error_response, register_error_handlers
from jwks import JwksCache
from observability import metrics
from observability.hooks import begin_request, finish_request
from observability.logs import configure_logging
from push import registry
from push.signing import UnreadableSecret

log = logging.getLogger("chatstore")


def create_app(environ=None):
    """The app for the given environment (os.environ by default)."""
    config = load_config(environ)
    app = Flask(__name__)
    app.config["CHATSTORE"] = config
    # Werkzeug refuses a larger body with 413 when the view reads it, i.e.
    # after authentication and lookup, as the contract's order of checks wants.
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json = OrjsonProvider(app)
    configure_logging(config.log_level, config.log_format)
    models.bind_database(config.database_url, config.db_pool_size)
    if config.webhook_secrets_key is not None:
        _check_webhook_secrets(config.webhook_secrets_key)
    if config.jwks_url:
        app.extensions["jwks"] = JwksCache(config.jwks_url, config.jwks_timeout_seconds,
                                           config.jwks_cache_seconds, config.jwks_min_refetch_seconds)
        app.extensions["verified_tokens"] = VerifiedTokenCache(config.jwks_cache_seconds)

    app.register_blueprint(chats.bp)
    app.register_blueprint(sync.bp)
    app.register_blueprint(keys.bp)
    app.register_blueprint(webhooks.bp)
    app.teardown_request(close_database)
    app.before_request(begin_request)
    app.after_request(finish_request)
    register_error_handlers(app)
    app.add_url_rule("/healthz", view_func=healthz)
    app.add_url_rule("/readyz", view_func=readyz)
    app.extensions["openapi"] = build_openapi()
    app.add_url_rule("/openapi.json", view_func=openapi_document)
    app.add_url_rule("/metrics", view_func=metrics.serve_metrics)
    app.register_blueprint(docs.bp)
    enable_cors(app, config.cors_origins)  # last: it reads every route's methods
    cli.register(app)
    return app


def _check_webhook_secrets(secrets_key):
    """Start-up stops (ConfigError) when stored webhook secrets can't be opened with WEBHOOK_SECRETS_KEY; a
    database not answering yet is not a reason to (readyz says so instead). The connection is closed, not kept
    in the pool: gunicorn forks its workers after this (preload), and they must share none."""
    try:
        with models.database.connection_context():
            registry.check_secrets_readable(secrets_key)
    except UnreadableSecret as error:
        raise ConfigError("WEBHOOK_SECRETS_KEY", str(error)) from None
    except DatabaseError:
        pass
    finally:
        models.database.obj.close_all()


def close_database(exc):
    # teardown runs even when the view raised, so the connection always goes back.
    database = models.database.obj
    if not database.is_closed():
        database.close()


def healthz():
    """The process answers; no database is touched."""
    return {"status": "ok"}


def readyz():
    """The database answers."""
    # connect and close rather than connection_context: a connection the server dropped is replaced in the
    # middle of the read (models.ReconnectingPostgresqlDatabase), which a context's own bookkeeping can't follow.
    try:
        models.database.connect()
        try:
            models.database.execute_sql("SELECT 1")
        finally:
            models.database.close()
    except Exception as error:  # any failure to reach the database means "not ready"
        log.warning("readiness check failed: %s", type(error).__name__)
        return error_response(503, "unavailable", "the database is not answering")
    return {"status": "ok"}


def openapi_document():
    """The OpenAPI 3.1 document of every endpoint."""
    return current_app.extensions["openapi"]


# gunicorn stops, instead of restarting the worker forever, when a worker exits with this code.
GUNICORN_WORKER_BOOT_ERROR = 3


def _create_app_or_exit():
    try:
        return create_app()
    except ConfigError as error:
        print(f"chatstore: bad configuration: {error}", file=sys.stderr)
        sys.exit(GUNICORN_WORKER_BOOT_ERROR if "gunicorn.workers" in sys.modules else 1)


app = _create_app_or_exit()
