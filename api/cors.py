"""Cross-origin calls from browser frontends (CORS_ORIGINS), with flask-cors.

Registered once on the app, so error responses carry the headers too. Each
route answers a preflight with the methods it takes, read from the app's own
URL map. Unset CORS_ORIGINS, nothing here is registered and no CORS header is
ever sent.
"""
import re

from flask import request
from flask_cors import CORS

ALLOWED_HEADERS = ["Authorization", "Content-Type", "If-None-Match", "If-Match"]
EXPOSED_HEADERS = ["ETag", "WWW-Authenticate", "Retry-After", "X-Request-ID"]
PREFLIGHT_MAX_AGE_SECONDS = 600
ACL_ALLOW_METHODS = "Access-Control-Allow-Methods"


def enable_cors(app, origins):
    """Answer browsers from `origins` (exact origins, or `*`); call after every route is registered."""
    # OPTIONS, a preflight included, is answered 204 with the Allow header Flask computes, CORS or not.
    app.after_request(_no_content_for_options)
    if not origins:
        return
    # Registered before flask-cors's own hook, so it runs after it (Flask runs them in reverse).
    app.after_request(_complete_preflight)
    CORS(app, resources=_resources_by_route(app), origins=list(origins), allow_headers=ALLOWED_HEADERS,
         expose_headers=EXPOSED_HEADERS, max_age=PREFLIGHT_MAX_AGE_SECONDS, supports_credentials=False,
         # Only an answer to a browser's Origin names an origin: flask-cors would otherwise send the
         # configured list to callers that sent none (curl, scripts).
         send_wildcard=False, always_send=False, vary_header=True)


def _resources_by_route(app):
    """A flask-cors resource per route: its path as an anchored regex, and the methods it takes."""
    resources = {}
    for rule in app.url_map.iter_rules():
        pattern = _route_pattern(rule.rule)
        methods = set(resources.get(pattern, {}).get("methods", ())) | set(rule.methods)
        resources[pattern] = {"methods": sorted(methods)}
    return resources


def _route_pattern(route):
    """`/a/<sid>/b/<path:cid>` -> `^/a/[^/]+/b/.+$`."""
    pattern = re.escape(route)
    pattern = re.sub(r"<path:[^>]+>", ".+", pattern)
    pattern = re.sub(r"<[^>]+>", "[^/]+", pattern)
    return "^" + pattern + "$"


def _complete_preflight(response):
    """An approved preflight allows every header the API reads; every response varies by Origin.

    flask-cors echoes only the headers a preflight asked for, and adds Vary only
    when several origins are configured; a cache needs it whatever the count.
    """
    response.vary.add("Origin")
    if ACL_ALLOW_METHODS in response.headers:
        response.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_HEADERS)
    return response


def _no_content_for_options(response):
    """Flask's automatic answer to OPTIONS (200, an empty body, the Allow header) as a 204 with no body type.
    Runs after every request: the method is read first, off the request object itself (observability/hooks.py
    says why), so any other request pays one comparison."""
    current = request._get_current_object()
    if current.method != "OPTIONS":
        return response
    rule = current.url_rule
    if rule is not None and rule.provide_automatic_options and response.status_code == 200:
        response.status_code = 204
        del response.headers["Content-Type"]  # no body, so no type
    return response
