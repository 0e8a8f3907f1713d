"""X-Request-ID: a sane incoming id is kept, otherwise one is made; it is echoed and logged."""
import re
import uuid

from flask import g, request

SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def keep_or_make_request_id():
    sent = request.headers.get("X-Request-ID", "")
    g.request_id = sent if SANE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


def echo_request_id(response):
    if "request_id" in g:
        response.headers["X-Request-ID"] = g.request_id
    return response
