"""Serving and driving for the benchmarks: gunicorn on a free port (Chatstore's settings or gunicorn's defaults),
and wrk against it from a separate process."""
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
WORKERS = os.environ.get("WEB_CONCURRENCY", "2")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """gunicorn serving `target` from `chdir`: with Chatstore's gunicorn.conf.py, or with gunicorn's own defaults."""

    def __init__(self, target, env, chdir=ROOT, chatstore_settings=True):
        self.port = free_port()
        settings = ["--config", os.path.join(ROOT, "gunicorn.conf.py")] if chatstore_settings else \
            ["--workers", env.get("WEB_CONCURRENCY", WORKERS)]  # run from bench/, which has no gunicorn.conf.py
        self.process = subprocess.Popen(
            [os.path.join(BIN, "gunicorn"), target, *settings, "--chdir", chdir, "--bind", f"127.0.0.1:{self.port}"],
            cwd=chdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=2)
                return
            except Exception as error:  # up when it answers anything at all
                if getattr(error, "code", None):
                    return
                time.sleep(0.2)
        sys.exit(f"{target} did not start")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def drive(url, token, seconds, connections, script=None, headers=()):
    """wrk from a separate process: (requests per second, p50 ms, p99 ms, non-2xx count)."""
    command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    for header in headers:
        command += ["-H", header]
    if script:
        command += ["-s", os.path.join(ROOT, "bench", script)]
    subprocess.run(command[:5] + ["-d", "1s"] + command[7:] + [url], capture_output=True)  # warm-up
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    latency = {pct: float(value) * UNITS[unit] for pct, value, unit in LATENCY.findall(output)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return rps, latency["50"], latency["99"], int(errors.group(1)) if errors else 0
