"""Prometheus metrics at GET /metrics: requests, latency, database errors, JWKS fetches.

Under gunicorn every worker writes its values to PROMETHEUS_MULTIPROC_DIR
(gunicorn.conf.py sets and empties it), and a scrape adds up all workers'
files; elsewhere (flask commands, tests) the process's own registry is served.
Labels are route templates, methods, statuses and outcome names — never a raw
path, a token or an org — so nobody's secret reaches a metric and the series
stay few.
"""
import functools
import hmac
import os

from flask import Response, current_app, request
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram,
                               generate_latest, multiprocess, values)

from errors import ApiError, not_found

# The process id, kept: in multiprocess mode prometheus_client asks for it on every increment, to notice a
# fork, and os.getpid is a system call (three a request). Renewed in every forked child before it runs.
_process_id = os.getpid()


def _renew_process_id():
    global _process_id
    _process_id = os.getpid()


os.register_at_fork(after_in_child=_renew_process_id)
if values.ValueClass is not values.MutexValue:  # multiprocess mode: PROMETHEUS_MULTIPROC_DIR is set
    # Chosen before any metric below is made: each takes values.ValueClass when it is created.
    values.ValueClass = values.MultiProcessValue(process_identifier=lambda: _process_id)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUESTS = Counter("chatstore_http_requests_total", "Requests answered, by route template, method and status.",
                   ["route", "method", "status"])
LATENCY = Histogram("chatstore_http_request_duration_seconds", "Time to answer a request, by route template.",
                    ["route", "method"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
DATABASE_ERRORS = Counter("chatstore_database_errors_total",
                          "Requests that failed because the database did not answer, by error class.", ["error"])
JWKS_FETCHES = Counter("chatstore_jwks_fetches_total", "Fetches of the identity provider's JWKS, by outcome.",
                       ["outcome"])


def observe_request(route, method, status, elapsed_seconds, database_error=None):
    """Count an answered request by its route template (never the raw path) and time it."""
    method = method if method in METHODS else "OTHER"
    _requests(route, method, status).inc()
    _latency(route, method).observe(elapsed_seconds)
    if database_error is not None:
        DATABASE_ERRORS.labels(database_error).inc()


# Each labelled series looked up once per process: labels() validates and locks on every call, a cost per
# request. The keys are bounded: route templates, known methods, statuses.
@functools.lru_cache(maxsize=1024)
def _requests(route, method, status):
    return REQUESTS.labels(route, method, str(status))


@functools.lru_cache(maxsize=256)
def _latency(route, method):
    return LATENCY.labels(route, method)


def serve_metrics():
    """All workers' metrics, to a caller that sends METRICS_TOKEN as its bearer token."""
    token = current_app.config["CHATSTORE"].metrics_token
    if token is None:
        raise not_found("no such resource")
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), token.encode()):
        raise ApiError(401, "send the metrics token: Authorization: Bearer <METRICS_TOKEN>",
                       headers={"WWW-Authenticate": "Bearer"})
    return Response(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)


def _registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY
