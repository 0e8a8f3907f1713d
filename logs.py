"""Logging: one line per request on standard error, as text or JSON (LOG_FORMAT).

A request line names the caller by kind and org only; no token or key is
ever logged.
"""
import json
import logging
import sys
import time

from flask import g, request

request_log = logging.getLogger("chatstore.request")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a request line carries its fields as keys."""

    def format(self, record):
        line = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name}
        line.update(getattr(record, "fields", None) or {"message": record.getMessage()})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(level, log_format):
    root = logging.getLogger("chatstore")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.propagate = False
    root.setLevel(level)


def start_timer():
    g.started = time.perf_counter()


def log_request(response):
    """One line per request; the caller is named by kind and org, never by token."""
    g.elapsed_seconds = time.perf_counter() - g.get("started", time.perf_counter())
    if not request_log.isEnabledFor(logging.INFO):
        return response
    caller = g.get("caller")
    fields = {
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "ms": round(g.elapsed_seconds * 1000, 1),
        "auth": caller.kind if caller else None,
        "org": caller.org_id if caller else None,
        "request_id": g.get("request_id"),
    }
    request_log.info("%s %s %d %.1fms auth=%s org=%s request_id=%s", fields["method"], fields["path"],
                     fields["status"], fields["ms"], fields["auth"] or "-", fields["org"] or "-",
                     fields["request_id"] or "-", extra={"fields": fields})
    return response
