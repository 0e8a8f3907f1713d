"""gunicorn settings, read from the environment (gunicorn loads this file from the working directory)."""
import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# WEB_CONCURRENCY is gunicorn's own variable for the worker count; 2 per core is its usual advice.
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * (os.cpu_count() or 1))
# Load the app once in the master: a bad setting then stops start-up with one line and a non-zero
# exit, instead of every worker failing in turn. The app opens no connection at import, so the
# forked workers share none.
preload_app = True
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# The app logs one line per request itself (method, path, status, ms, auth kind, org); gunicorn's
# access log is off unless asked for, e.g. GUNICORN_ACCESS_LOG=- for standard output.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
