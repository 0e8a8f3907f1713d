"""Check real responses against the schema /openapi.json gives for their operation and status."""
import re

from flask import request
from jsonschema import Draft202012Validator

from api.openapi import build_openapi

FLASK_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")


def record_response(responses, response):
    rule = request.url_rule.rule if request.url_rule else None
    path = FLASK_PARAMETER.sub(r"{\1}", rule) if rule else None
    body = response.get_json(silent=True) if response.is_json else None
    responses.append((request.method, path, response.status_code, body, response.content_type))
    return response


def check_against_openapi(responses):
    """A line per response whose status is undocumented or whose body breaks the documented schema."""
    document = build_openapi()
    problems, seen = [], set()
    for method, path, status, body, content_type in responses:
        if method == "OPTIONS" and status == 204:
            continue  # a preflight: no body
        operation = document["paths"].get(path, {}).get(method.lower()) if path else None
        if operation is None:
            # Unknown path or wrong method: only the error envelope is promised.
            schema = {"$ref": "#/components/schemas/Error"}
        else:
            documented = operation["responses"].get(str(status))
            if documented is None:
                problems.append(f"{method} {path}: status {status} is not documented")
                continue
            if "content" not in documented:  # a 304: no body to check
                continue
            if "application/json" not in documented["content"]:
                continue  # /docs: an HTML page
            schema = documented["content"]["application/json"]["schema"]
        if content_type != "application/json":
            problems.append(f"{method} {path} {status}: Content-Type {content_type}")
            continue
        key = (method, path, status, repr(body))
        if key in seen:
            continue
        seen.add(key)
        validator = Draft202012Validator({**schema, "components": document["components"]})
        for error in validator.iter_errors(body):
            problems.append(f"{method} {path} {status}: {error.message}")
    return problems
