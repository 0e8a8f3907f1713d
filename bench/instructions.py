"""make instructions: CPU instructions per request, Chatstore against the floor, counted by valgrind's callgrind.

wrk's req/s swing by 10-25% from run to run on a shared machine; an instruction count does not. Two counts per
figure, on the SQLite bench database of `make bench` (seeded here if missing), with Python's hash seed fixed so
that runs repeat:

- in-process: one process calling the WSGI app directly (no server, no network), counting only the measured
  loop (callgrind collects inside functools.reduce, which the loop runs in);
- served: one gunicorn worker with Chatstore's gunicorn.conf.py (gevent) under callgrind, its counts zeroed
  after a warm-up and dumped after SERVED_REQUESTS keep-alive requests from a client outside valgrind. This
  is what a request costs as served: gevent's locks and greenlet-locals, gunicorn's parser, the socket calls
  (but not the kernel's time in them).

Chatstore and the floor are sent the same request, the key's Authorization header included (the floor ignores it:
see bench/run.py's ratio_rounds).

    python bench/instructions.py            # the table
    python bench/instructions.py --child one chatstore 200   # one in-process figure (run under valgrind)
"""
import functools
import glob
import http.client
import io
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench"), os.path.join(ROOT, "tests")]
REQUESTS = {"one": 200, "page": 60}
SERVED_WARM_UP = 100
SERVED_REQUESTS = {"one": 200, "page": 60}


def bench_environment():
    import run as bench
    return bench, {**os.environ, "DATABASE_URL": bench.URLS["sqlite"], "SECRET_KEY": bench.SECRET_KEY,
                   "LOG_LEVEL": "WARNING", "PYTHONHASHSEED": "0"}


def request_path(bench, kind):
    return f"/api/v1/sessions/{bench.BIG_SESSION}/chats" + (f"/{bench.ONE_JID}" if kind == "one" else "")


def child(kind, target, count):
    bench, env = bench_environment()
    os.environ.update(env)
    bench.seed(env)
    token = bench.api_key(env)  # the floor is sent the same request, its header unread (bench/run.py)
    os.chdir(ROOT)
    if target == "chatstore":
        from app import app
    else:
        from floor_flask import app
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": request_path(bench, kind), "QUERY_STRING": "",
               "SERVER_NAME": "bench", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "bench",
               "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.multithread": False,
               "wsgi.multiprocess": True, "wsgi.run_once": False,
               **({"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {})}

    def request(_=None, __=None):
        statuses = []
        b"".join(app({**environ, "wsgi.input": io.BytesIO()}, lambda status, headers, exc=None: statuses.append(status)))
        assert statuses[0].startswith("200"), statuses
    for _ in range(50):  # warm: caches, the pool, the statement cache
        request()
    functools.reduce(request, range(count), None)


def counted(kind, target):
    count = REQUESTS[kind]
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--collect-atstart=no",
         "--toggle-collect=functools_reduce", sys.executable, os.path.abspath(__file__), "--child", kind, target,
         str(count)], env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", result.stderr).group(1)) // count


def send(port, path, token, count):
    """count GETs on one keep-alive connection, each answered 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for _ in range(count):
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            sys.exit(f"GET {path}: {response.status}")
    connection.close()


def served_count(kind, target, bench, env, token):
    """Instructions per request in one gunicorn worker (Chatstore's settings) under callgrind."""
    import run
    chdir, app = (ROOT, "app:app") if target == "chatstore" else (os.path.join(ROOT, "bench"), "floor_flask:app")
    port, path, count = run.free_port(), request_path(bench, kind), SERVED_REQUESTS[kind]
    with tempfile.TemporaryDirectory() as out:
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out}/cg.%p",
             os.path.join(run.BIN, "gunicorn"), app, "--config", os.path.join(ROOT, "gunicorn.conf.py"),
             "--chdir", chdir, "--bind", f"127.0.0.1:{port}"],
            cwd=chdir, env={**env, "WEB_CONCURRENCY": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300  # gunicorn under valgrind starts in tens of seconds
            while True:
                try:
                    send(port, path, token, SERVED_WARM_UP)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        sys.exit(f"{app} did not start under valgrind")
                    time.sleep(1)
            worker = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True,
                                    check=True).stdout.split()[0]
            subprocess.run(["callgrind_control", "-z", worker], capture_output=True, check=True)
            send(port, path, token, count)
            subprocess.run(["callgrind_control", "-d", worker], capture_output=True, check=True)
            [dump] = glob.glob(f"{out}/cg.{worker}.*")
            with open(dump) as counts:
                total = int(re.search(r"^(?:summary|totals): (\d+)", counts.read(), re.M).group(1))
        finally:
            server.terminate()
            server.wait(timeout=120)
    return total // count


def main():
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    bench, env = bench_environment()
    bench.seed(env)
    token = bench.api_key(env)
    print("| request (SQLite, API key) | counted | Chatstore | floor | floor / Chatstore |")
    print("| --- | --- | ---: | ---: | ---: |")
    for kind, label in (("one", "GET one chat"), ("page", "list, first page of 50 (1M session)")):
        ours, floor = counted(kind, "chatstore"), counted(kind, "floor")
        print(f"| {label} | in-process | {ours:,} | {floor:,} | {floor / ours:.2f} |")
        ours, floor = served_count(kind, "chatstore", bench, env, token), served_count(kind, "floor", bench, env, token)
        print(f"| {label} | served (gevent worker) | {ours:,} | {floor:,} | {floor / ours:.2f} |")


if __name__ == "__main__":
    main()
