"""make instructions: CPU instructions per request, Chatstore against the floor, counted by valgrind's callgrind.

wrk's req/s swing by 10-25% from run to run on a shared machine; an instruction count does not. Each figure
is one process calling the WSGI app directly (no server, no network) on the SQLite bench database of
`make bench` (seeded here if missing), counting only the measured loop (callgrind collects inside
functools.reduce, which the loop runs in). Python's hash seed is fixed so that runs repeat.

    python bench/instructions.py            # the table
    python bench/instructions.py --child one chatstore 200   # one figure (run under valgrind by the table)
"""
import functools
import io
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench"), os.path.join(ROOT, "tests")]
REQUESTS = {"one": 200, "page": 60}


def child(kind, target, count):
    import run as bench
    env = {**os.environ, "DATABASE_URL": bench.URLS["sqlite"], "SECRET_KEY": bench.SECRET_KEY, "LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    bench.seed(env)
    token = bench.api_key(env) if target == "chatstore" else None
    os.chdir(ROOT)
    if target == "chatstore":
        from app import app
    else:
        from floor_flask import app
    path = f"/api/v1/sessions/{bench.BIG_SESSION}/chats" + (f"/{bench.ONE_JID}" if kind == "one" else "")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "bench",
               "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "bench", "wsgi.url_scheme": "http",
               "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": True,
               "wsgi.run_once": False, **({"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {})}

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


def main():
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    print("| request (SQLite, API key) | Chatstore | floor | floor / Chatstore |")
    print("| --- | ---: | ---: | ---: |")
    for kind, label in (("one", "GET one chat"), ("page", "list, first page of 50 (1M session)")):
        ours, floor = counted(kind, "chatstore"), counted(kind, "floor")
        print(f"| {label} | {ours:,} | {floor:,} | {floor / ours:.2f} |")


if __name__ == "__main__":
    main()
