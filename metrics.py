"""Prometheus metrics at GET /metrics: requests, latency, database errors, JWKS fetches.

Under gunicorn every worker writes its values to PROMETHEUS_MULTIPROC_DIR
(gunicorn.conf.py sets and empties it), and a scrape adds up all workers'
files; elsewhere (flask commands, tests) the process's own registry is served.
Labels are route templates, methods, statuses and outcome names — never a raw
path, a token or an org — so nobody's secret reaches a metric and the series
stay few.
"""
import bisect
import functools
import hmac
import os
import sys
import threading

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


def _os_lock():
    """A lock from the OS, even where gevent has patched threading: gevent's own lock cost ~0.9 µs a use, three
    uses a request. prometheus_client holds its lock only around a write to its memory-mapped file, which never
    waits, so no greenlet can switch while holding it; and between threads (gthread workers) the OS lock is
    what threading.Lock would be without gevent."""
    if "gevent.monkey" in sys.modules:
        from gevent import monkey
        return monkey.get_original("_thread", "allocate_lock")()
    return threading.Lock()


if values.ValueClass is not values.MutexValue:  # multiprocess mode: PROMETHEUS_MULTIPROC_DIR is set
    # Chosen before any metric below is made: each takes values.ValueClass when it is created. The factory
    # makes the one lock all its values share from the module's `Lock`, when called.
    values.Lock = _os_lock
    values.ValueClass = values.MultiProcessValue(process_identifier=lambda: _process_id)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUESTS = Counter("chatstore_http_requests_total", "Requests answered, by route template, method and status.",
                   ["route", "method", "status"])
# The bounds ascend and end with +Inf, as the histogram's own do: bisect_left finds the first bound a latency
# is at or under, which is the bucket Histogram.observe would count it in.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))
LATENCY = Histogram("chatstore_http_request_duration_seconds", "Time to answer a request, by route template.",
                    ["route", "method"], buckets=LATENCY_BUCKETS)
DATABASE_ERRORS = Counter("chatstore_database_errors_total",
                          "Requests that failed because the database did not answer, by error class.", ["error"])
JWKS_FETCHES = Counter("chatstore_jwks_fetches_total", "Fetches of the identity provider's JWKS, by outcome.",
                       ["outcome"])


def observe_request(route, method, status, elapsed_seconds, database_error=None):
    """Count an answered request by its route template (never the raw path) and time it."""
    count, latency_sum, latency_buckets = _request_series(route, method if method in METHODS else "OTHER", status)
    count.inc(1)
    latency_sum.inc(elapsed_seconds)
    latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, elapsed_seconds)].inc(1)
    if database_error is not None:
        DATABASE_ERRORS.labels(database_error).inc()


@functools.lru_cache(maxsize=1024)
def _request_series(route, method, status):
    """The three values one request writes: its count, and its latency's sum and bucket (a list, by bound).

    Taken once per series, and written directly: `labels()` validates and locks on every call, and the
    metrics' own inc() and observe() check their labels again, then walk the buckets in Python (prometheus_client
    0.26's Counter._value, Histogram._sum and ._buckets; tests/test_metrics.py holds the exposition to them).
    Each value's inc() still takes its lock and notices a fork. The keys are bounded: route templates, known
    methods, statuses.
    """
    latency = LATENCY.labels(route, method)
    return REQUESTS.labels(route, method, str(status))._value, latency._sum, latency._buckets


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
