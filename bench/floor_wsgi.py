"""Floor 2: a plain WSGI callable doing the same read as floor_flask, with nothing in between."""
import json

from floor_flask import QUERY, COLUMNS, connection

PREFIX = "/api/v1/sessions/"


def app(environ, start_response):
    sid, _, cid = environ["PATH_INFO"][len(PREFIX):].partition("/chats/")
    cursor = connection().cursor()
    cursor.execute(QUERY, (sid, cid))
    row = cursor.fetchone()
    status, body = ("200 OK", dict(zip(COLUMNS, row))) if row else ("404 Not Found", {"error": "not found"})
    payload = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return [payload]
