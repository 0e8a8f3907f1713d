"""create_app wires the parts together; `app` is what gunicorn serves."""
import logging
import sys
import time

from flask import Flask, current_app, g, request

import chats
import cli
import models
from config import ConfigError, load_config
from errors import error_response, register_error_handlers
from jwks import JwksCache
from openapi import build_openapi

request_log = logging.getLogger("chatstore.request")


def create_app(environ=None):
    """The app for the given environment (os.environ by default)."""
    config = load_config(environ)
    app = Flask(__name__)
    app.config["CHATSTORE"] = config
    # Werkzeug refuses a larger body with 413 when the view reads it, i.e.
    # after authentication and lookup, as the contract's order of checks wants.
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False
    configure_logging(config.log_level)
    models.bind_database(config.database_url)
    if config.jwks_url:
        app.extensions["jwks"] = JwksCache(config.jwks_url, config.jwks_timeout_seconds,
                                           config.jwks_cache_seconds, config.jwks_min_refetch_seconds)

    app.register_blueprint(chats.bp)
    app.teardown_request(close_database)
    app.before_request(start_timer)
    app.after_request(log_request)
    register_error_handlers(app)
    app.add_url_rule("/healthz", view_func=healthz)
    app.add_url_rule("/readyz", view_func=readyz)
    app.extensions["openapi"] = build_openapi()
    app.add_url_rule("/openapi.json", view_func=openapi_document)
    cli.register(app)
    return app


def close_database(exc):
    # teardown runs even when the view raised, so the connection always goes back.
    if not models.database.is_closed():
        models.database.close()


def healthz():
    """The process answers; no database is touched."""
    return {"status": "ok"}


def readyz():
    """The database answers."""
    try:
        with models.database.connection_context():
            models.database.execute_sql("SELECT 1")
    except Exception as error:  # any failure to reach the database means "not ready"
        request_log.warning("readiness check failed: %s", type(error).__name__)
        return error_response(503, "unavailable", "the database is not answering")
    return {"status": "ok"}


def openapi_document():
    """The OpenAPI 3.1 document of every endpoint."""
    return current_app.extensions["openapi"]


def configure_logging(level):
    root = logging.getLogger("chatstore")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level)


def start_timer():
    g.started = time.perf_counter()


def log_request(response):
    """One line per request; the caller is named by kind and org, never by token."""
    caller = g.get("caller")
    elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
    request_log.info("%s %s %d %.1fms auth=%s org=%s", request.method, request.path,
                     response.status_code, elapsed_ms,
                     caller.kind if caller else "-", caller.org_id if caller else "-")
    return response


def _create_app_or_exit():
    try:
        return create_app()
    except ConfigError as error:
        sys.exit(f"chatstore: bad configuration: {error}")


app = _create_app_or_exit()
