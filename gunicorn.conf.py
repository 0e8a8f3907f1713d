"""gunicorn settings, read from the environment (gunicorn loads this file from the working directory).

Workers are gevent's: each connection is a greenlet, so a thousand clients that send nothing, or trickle
their request a byte at a time, cost a little memory each instead of holding a worker (with the default
sync workers, four such clients stalled `make run`'s four workers until the 30 s timeout). The app is
loaded once in the master (preload), so the standard library is patched here, before anything imports it,
and psycopg2 is made to wait cooperatively too (psycogreen).
"""
import os

WORKER_CLASS = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
if WORKER_CLASS == "gevent":
    from gevent import monkey

    monkey.patch_all()
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()

import shutil  # noqa: E402  (after the patching above)
import gevent  # noqa: E402
import tempfile  # noqa: E402

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
worker_class = WORKER_CLASS
# WEB_CONCURRENCY is gunicorn's own variable for the worker count; 2 per core is its usual advice.
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * (os.cpu_count() or 1))
# Open connections per worker, idle ones included; the database pool is bounded separately (DB_POOL_SIZE).
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
# Load the app once in the master: a bad setting then stops start-up with one line and a non-zero
# exit, instead of every worker failing in turn. The app opens no connection at import, so the
# forked workers share none.
preload_app = True
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# How long a served connection steps aside after each request (post_request): long enough to go behind one
# turn of the event loop, which polls the other sockets; a microsecond costs no measurable throughput.
FAIR_TURN_SECONDS = 0.000001
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# The app logs one line per request itself (method, path, status, ms, auth kind, org, request id);
# gunicorn's access log is off unless asked for, e.g. GUNICORN_ACCESS_LOG=- for standard output.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# /metrics adds up every worker's counts through prometheus_client's multiprocess mode: each worker
# writes its own files in this directory. It must be set before the app (and prometheus_client) is
# imported, and emptied at start, or a restart would add the counts of workers long gone.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Named now, made in on_starting: a start-up that fails before then leaves nothing behind. Remembered
    # in the environment, which outlives a reload (kill -HUP reads this file again).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(tempfile.gettempdir(), f"chatstore-metrics-{os.getpid()}")
    os.environ["CHATSTORE_MADE_METRICS_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]
_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]


def post_request(worker, req, environ, resp):
    """Let every other connection of this worker have its turn before this one's next request.

    A gevent worker serves each connection in a greenlet that yields only when a read would block. A keep-alive
    client sending requests back to back always has its next one waiting, and SQLite's calls never block on a
    socket, so that greenlet kept the worker while the others' requests waited (p99 187-264 ms at 8 busy
    clients against 4 ms with sync workers). Sleeping a moment past zero puts this greenlet behind one turn of
    the event loop, which polls every socket first: each waiting request gets served, one each in turn.
    (gevent.sleep(0) switches only to greenlets already runnable, without polling: a neighbour still waited
    44 ms.)"""
    if worker_class == "gevent":
        gevent.sleep(FAIR_TURN_SECONDS)


def post_worker_init(worker):
    """A graceful stop (TERM, or a reload's old workers) ends every long-poll of this worker at once, with the
    empty page it would have answered at its deadline: a wait of up to 30 s would otherwise hold the stop past
    the platform's grace period. `worker.alive` is what gunicorn itself clears to stop the worker."""
    from store.watch import watcher

    watcher.stop_when(lambda: not worker.alive)


def on_starting(server):
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if os.environ.get("CHATSTORE_MADE_METRICS_DIR") == _metrics_dir:  # ours; one the operator named stays
        shutil.rmtree(_metrics_dir, ignore_errors=True)
