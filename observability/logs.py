"""Logging: one line per request on standard error, as text or JSON (LOG_FORMAT).

A request line names the caller by kind and org only; no token or key is
ever logged.
"""
import json
import logging
import sys

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


def request_lines_enabled():
    return request_log.isEnabledFor(logging.INFO)


def log_request(method, path, status, elapsed_seconds, caller, request_id):
    """One line per request; the caller is named by kind and org, never by token."""
    fields = {
        "method": method,
        "path": path,
        "status": status,
        "ms": round(elapsed_seconds * 1000, 1),
        "auth": caller.kind if caller else None,
        "org": caller.org_id if caller else None,
        "request_id": request_id,
    }
    request_log.info("%s %s %d %.1fms auth=%s org=%s request_id=%s", method, path, status, fields["ms"],
                     fields["auth"] or "-", fields["org"] or "-", request_id or "-", extra={"fields": fields})
