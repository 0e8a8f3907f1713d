"""Fair serving under keep-alive load: latency percentiles, and a neighbour's wait beside busy clients.

1. wrk, 1 thread, 8 keep-alive connections, against GET one chat and a 50-chat page (API key): req/s, p50, p90,
   p99 of Chatstore served by its gunicorn.conf.py, of the bare-Flask floor served the same way, and of the floor
   on gunicorn's sync workers.
2. Noisy neighbour: 1 (then 8) clients sending back-to-back keep-alive requests as fast as they can (wrk), while
   a second client sends one GET every 50 ms on its own keep-alive connection: that client's p50, p99, max.

Targets (issue "fair under load"): Chatstore's p99 <= 25 ms and <= 5x the sync floor's; the neighbour's p99
<= 25 ms; throughput >= 0.80x the same-config floor.

    python bench/fairness.py [--backends sqlite,postgresql] [--seconds 5]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench"), os.path.join(ROOT, "tests")]

from hostile import JID, SESSION_ID, percentile, scratch_database, seed  # noqa: E402
from driving import UNITS, Served  # noqa: E402

PERCENTILES = re.compile(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
NEIGHBOUR_INTERVAL_SECONDS = 0.05


def wrk(url, key, seconds, connections):
    """(req/s, {50: ms, 90: ms, 99: ms}) from wrk with one thread."""
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--latency",
               "-H", f"Authorization: Bearer {key}", url]
    subprocess.run(command[:5] + ["1s"] + command[6:], capture_output=True)  # warm-up
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    return rps, {int(pct): float(value) * UNITS[unit] for pct, value, unit in PERCENTILES.findall(output)}


def neighbour(url, key, busy_clients, seconds):
    """The latencies (ms) of one GET every 50 ms on its own connection while `busy_clients` hammer the server."""
    load = threading.Thread(target=wrk, args=(url, key, seconds + 1, busy_clients))
    load.start()
    time.sleep(1.5)  # past wrk's warm-up, into its measured run
    latencies = []
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {key}"
        deadline = time.monotonic() + seconds - 1
        while time.monotonic() < deadline:
            started = time.perf_counter()
            session.get(url, timeout=10).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(NEIGHBOUR_INTERVAL_SECONDS)
    load.join()
    return latencies


def bench_backend(backend, url, seconds):
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": "2",
           "SECRET_KEY": "fairness-bench"}
    key = seed(env)
    paths = {"GET one": f"/api/v1/sessions/{SESSION_ID}/chats/{JID}", "page of 50": f"/api/v1/sessions/{SESSION_ID}/chats"}
    servers = {"Chatstore, gunicorn.conf.py": Served("app:app", env),
               "floor, gunicorn.conf.py": Served("floor_flask:app", env, chdir=os.path.join(ROOT, "bench")),
               "floor, sync workers": Served("floor_flask:app", env, chdir=os.path.join(ROOT, "bench"),
                                             chatstore_settings=False)}
    print(f"\n### {backend}: wrk, 1 thread, 8 keep-alive connections, {seconds} s\n")
    print("| request | served | req/s | p50 ms | p90 ms | p99 ms |\n| --- | --- | ---: | ---: | ---: | ---: |")
    try:
        figures = {}
        for what, path in paths.items():
            for name, served in servers.items():
                rps, pct = figures[what, name] = wrk(served.base + path, key, seconds, 8)
                print(f"| {what} | {name} | {rps:,.0f} | {pct[50]:.2f} | {pct[90]:.2f} | {pct[99]:.2f} |")
        print()
        for what in paths:
            app_rps, app_pct = figures[what, "Chatstore, gunicorn.conf.py"]
            floor_rps = figures[what, "floor, gunicorn.conf.py"][0]
            sync_p99 = figures[what, "floor, sync workers"][1][99]
            print(f"{what}: throughput {app_rps / floor_rps:.2f}x the same-config floor (>= 0.80), p99 "
                  f"{app_pct[99]:.1f} ms (<= 25), {app_pct[99] / sync_p99:.1f}x the sync floor's {sync_p99:.1f} ms "
                  f"(<= 5x)")
        app = servers["Chatstore, gunicorn.conf.py"]
        for busy in (1, 8):
            latencies = neighbour(app.base + paths["GET one"], key, busy, seconds + 3)
            print(f"neighbour, one GET every 50 ms beside {busy} back-to-back keep-alive client(s): "
                  f"{len(latencies)} GETs, p50 {statistics.median(latencies):.1f} ms, "
                  f"p99 {percentile(latencies, 0.99):.1f} ms (<= 25), max {max(latencies):.1f} ms")
    finally:
        for served in servers.values():
            served.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    for backend in args.backends.split(","):
        bench_backend(backend, scratch_database(backend, "fairness"), args.seconds)


if __name__ == "__main__":
    main()
