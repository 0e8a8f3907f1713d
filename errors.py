"""The one error envelope, and the handlers that give every error that shape.

`{"error": {"code": str, "message": str, "details": object}}`, for our own
errors and the framework's alike. Views raise ApiError; nothing else builds
an error body.
"""
import logging

from flask import g, jsonify
from peewee import InterfaceError, OperationalError
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.exceptions import HTTPException

log = logging.getLogger("chatstore")

CODES_BY_STATUS = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    410: "gone",
    412: "precondition_failed",
    413: "payload_too_large",
    422: "validation_error",
    500: "internal_error",
    503: "unavailable",
}
MESSAGES_BY_STATUS = {
    404: "no such resource",
    405: "method not allowed",
    413: "request body too large",
}


class ApiError(Exception):
    def __init__(self, status, message, details=None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = CODES_BY_STATUS[status]
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def not_found(message):
    return ApiError(404, message)


def validation_error(details, message=None):
    """A 422 naming what was refused, field by field in `details`; its message names the fields too, unless a
    message of its own says more (a body that is not JSON at all)."""
    return ApiError(422, message or "invalid " + ", ".join(sorted(map(str, details))), details)


def error_response(status, code, message, details=None, headers=None):
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def handle_api_error(error):
    return error_response(error.status, error.code, error.message, error.details, error.headers)


def handle_http_exception(error):
    """Werkzeug's own errors (unknown path, wrong method, body too large) in our shape."""
    status = error.code or 500
    code = CODES_BY_STATUS.get(status, "internal_error" if status >= 500 else "validation_error")
    headers = {}
    if status == 405:
        headers["Allow"] = ", ".join(error.valid_methods or ())
    message = MESSAGES_BY_STATUS.get(status, error.name.lower())
    return error_response(status, code, message, headers=headers)


def handle_database_down(error):
    g.database_error = type(error).__name__  # counted with the request (hooks.finish_request)
    log.warning("database unavailable: %s", type(error).__name__)
    return error_response(503, "unavailable", "the database is not answering; try again shortly")


def handle_pool_exhausted(error):
    """Every connection of the worker's pool stayed busy for the pool's whole wait (DB_POOL_SIZE, models.py)."""
    g.database_error = type(error).__name__
    log.warning("database pool exhausted: %s", type(error).__name__)
    return error_response(503, "unavailable", "every database connection is busy; try again shortly")


def handle_unexpected(error):
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal error")


def register_error_handlers(app):
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(OperationalError, handle_database_down)
    app.register_error_handler(InterfaceError, handle_database_down)
    app.register_error_handler(MaxConnectionsExceeded, handle_pool_exhausted)
    app.register_error_handler(Exception, handle_unexpected)
