"""Prometheus metrics at GET /metrics: requests, latency, database errors, JWKS fetches, webhook deliveries.

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
import time

from flask import Response, current_app, request
from peewee import DatabaseError
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest,
                               multiprocess)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from errors import ApiError, not_found
from models import database
from push.sender import OUTCOMES
from store import streams

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUESTS = Counter("chatstore_http_requests_total", "Requests answered, by route template, method and status.",
                   ["route", "method", "status"])
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))
LATENCY = Histogram("chatstore_http_request_duration_seconds", "Time to answer a request, by route template.",
                    ["route", "method"], buckets=LATENCY_BUCKETS)
DATABASE_ERRORS = Counter("chatstore_database_errors_total",
                          "Requests that failed because the database did not answer, by error class.", ["error"])
JWKS_FETCHES = Counter("chatstore_jwks_fetches_total", "Fetches of the identity provider's JWKS, by outcome.",
                       ["outcome"])


def observe_request(route, method, status, elapsed_seconds, database_error=None):
    """Count an answered request by its route template (never the raw path) and time it."""
    count, latency = _request_series(route, method if method in METHODS else "OTHER", status)
    count.inc()
    latency.observe(elapsed_seconds)
    if database_error is not None:
        DATABASE_ERRORS.labels(database_error).inc()


@functools.lru_cache(maxsize=1024)
def _request_series(route, method, status):
    """A request's count and latency series, taken once per label set (`labels()` validates its values on every
    call). The keys are bounded: route templates, known methods, statuses."""
    return REQUESTS.labels(route, method, str(status)), LATENCY.labels(route, method)


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


class WebhookCollector:
    """Webhook delivery, as the database has it at the scrape: the delivery processes' attempts by outcome, and
    per endpoint (by id, never its URL) the age of the oldest change not yet delivered (0: none waiting)."""

    def describe(self):
        return []  # nothing read at registration: the database is read at a scrape only

    def collect(self):
        try:
            with database.connection_context():
                # Noted here too, not only by the delivery process: when no delivery process runs is when the
                # age matters most.
                streams.mark_behind(int(time.time() * 1000))
                counts, oldest = streams.attempt_counts(), streams.oldest_behind()
        except DatabaseError:
            return
        attempts = CounterMetricFamily("chatstore_webhook_attempts", "Webhook delivery attempts, by outcome.",
                                       labels=["outcome"])
        for outcome in OUTCOMES:
            attempts.add_metric([outcome], counts.get(outcome, 0))
        yield attempts
        age = GaugeMetricFamily("chatstore_webhook_oldest_undelivered_seconds",
                                "Per webhook endpoint, how long its oldest change not yet delivered has waited.",
                                labels=["webhook"])
        now_ms = time.time() * 1000
        for webhook_id, behind_since in oldest:
            age.add_metric([str(webhook_id)], 0 if behind_since is None else max(0, (now_ms - behind_since) / 1000))
        yield age


WEBHOOKS = WebhookCollector()
REGISTRY.register(WEBHOOKS)


def _registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(WEBHOOKS)
        return registry
    return REGISTRY
