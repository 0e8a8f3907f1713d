"""make bench: seed 1,000,000 chats through the import path, serve with gunicorn, drive it with wrk, print a table.

Every figure is also given as a ratio to a floor: a bare Flask app (bench/floor_flask.py) doing GET one chat's
read with the raw driver and no auth, served with the same gunicorn settings. A plain WSGI callable
(bench/floor_wsgi.py) doing the same read is measured too.

    python bench/run.py [--backends sqlite,postgresql] [--seconds 5] [--connections 8]
"""
import argparse
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.request

import sync_feed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

BIN = os.path.dirname(sys.executable)
BIG_SESSION, SMALL_SESSION = "01JBENCH000000000000000001", "01JBENCH000000000000000002"
BIG_COUNT, SMALL_COUNT, DEEP_AFTER = 1_000_000, 1_000, 900_000
ONE_JID = "500000@s.whatsapp.net"
SECRET_KEY = "bench-cursor-key"
# import-chats of 1,000,000 lines before the sync endpoint existed (README, stop 7): 56 s and 130 s.
IMPORT_RATE_BEFORE_SYNC = {"sqlite": 18_000, "postgresql": 7_700}
URLS = {"sqlite": "sqlite:///" + os.path.join(ROOT, "bench", "bench.db"),
        "postgresql": "postgresql://postgres@127.0.0.1:5432/chatstore_bench"}


def chat_lines(count, seed):
    """JSON Lines of chats: every type, some with no message, a few pinned."""
    rng = random.Random(seed)
    servers = ["s.whatsapp.net"] * 7 + ["g.us"] * 2 + ["lid"]
    for n in range(count):
        server = "s.whatsapp.net" if n == 500_000 else servers[n % 10]
        chat = {"jid": f"{n}@{server}", "name": f"Chat {n}", "unreadCount": n % 5,
                "lastMessageAt": None if n % 50 == 0 else 1_700_000_000_000 + rng.randrange(10 ** 10),
                "pinned": n < 3}
        yield json.dumps(chat) + "\n"


def flask_command(env, *args, stdin_lines=None):
    process = subprocess.Popen([os.path.join(BIN, "flask"), "--app", "app", *args], cwd=ROOT, env=env,
                               stdin=subprocess.PIPE if stdin_lines else None, stdout=subprocess.PIPE, text=True)
    if stdin_lines:
        for line in stdin_lines:
            process.stdin.write(line)
        process.stdin.close()
    output = process.stdout.read()
    if process.wait() != 0:
        sys.exit(f"flask {' '.join(args)} failed")
    return output.strip()


def seed(env):
    """Org, a 1,000,000-chat and a 1,000-chat session, through `import-chats`; kept between runs."""
    import models
    flask_command(env, "init-db")
    models.bind_database(env["DATABASE_URL"])
    with models.database.connection_context():
        done = models.Chat.select().where(models.Chat.session == BIG_SESSION).count() == BIG_COUNT
        if not done:
            models.Org.insert(id="bench", name="Bench").on_conflict_ignore().execute()
            for session_id in (BIG_SESSION, SMALL_SESSION):
                models.Session.insert(id=session_id, org="bench").on_conflict_ignore().execute()
    if done:
        print("  seeded already")
        return None
    started = time.monotonic()
    flask_command(env, "import-chats", BIG_SESSION, "-", stdin_lines=chat_lines(BIG_COUNT, 1))
    import_seconds = time.monotonic() - started
    flask_command(env, "import-chats", SMALL_SESSION, "-", stdin_lines=chat_lines(SMALL_COUNT, 2))
    with models.database.connection_context():
        models.database.execute_sql("ANALYZE")
    print(f"  import-chats of {BIG_COUNT:,} lines: {import_seconds:.1f} s")
    return import_seconds


def deep_cursor(env):
    """The cursor a client holds after paging through 900,000 chats."""
    import cursors
    import models
    import reads
    models.bind_database(env["DATABASE_URL"])
    with models.database.connection_context():
        chat = (models.Chat.select().where(models.Chat.session == BIG_SESSION).order_by(*reads.display_order())
                .offset(DEEP_AFTER - 1).limit(1).dicts().get())
    return cursors.encode_cursor(SECRET_KEY.encode(), BIG_SESSION, reads.display_position(chat), {})


def api_key(env):
    import models
    from cli import issue_api_key
    models.bind_database(env["DATABASE_URL"])
    with models.database.connection_context():
        return issue_api_key("bench", "read,send", "bench")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """gunicorn with the project's gunicorn.conf.py, serving `target` from `chdir`."""

    def __init__(self, target, env, chdir=ROOT):
        self.port = free_port()
        self.process = subprocess.Popen(
            [os.path.join(BIN, "gunicorn"), target, "--config", os.path.join(ROOT, "gunicorn.conf.py"),
             "--chdir", chdir, "--bind", f"127.0.0.1:{self.port}"],
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


def drive(url, token, seconds, connections, script=None):
    """wrk from a separate process: (requests per second, p50 ms, p99 ms, non-2xx count)."""
    command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    if script:
        command += ["-s", os.path.join(ROOT, "bench", script)]
    subprocess.run(command[:5] + ["-d", "1s"] + command[7:] + [url], capture_output=True)  # warm-up
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    latency = {pct: float(value) * UNITS[unit] for pct, value, unit in LATENCY.findall(output)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return rps, latency["50"], latency["99"], int(errors.group(1)) if errors else 0


def bench_backend(backend, seconds, connections, provider):
    url = URLS[backend]
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": SECRET_KEY, "JWKS_URL": provider.url,
           "LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": os.environ.get("WEB_CONCURRENCY", "4")}
    if backend == "postgresql":
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", "chatstore_bench"], capture_output=True)
    print(f"{backend}: seeding")
    import_seconds = seed(env)
    cursor, key = deep_cursor(env), api_key(env)
    jwt = provider.mint({"org_id": "bench", "org_role": "admin"}, expires_in=3600)
    rows = []
    served = Served("app:app", env)
    try:
        one = f"{served.base}/api/v1/sessions/{BIG_SESSION}/chats/{ONE_JID}"
        cases = [
            ("GET one chat", one, None),
            ("list, first page (1M session)", f"{served.base}/api/v1/sessions/{BIG_SESSION}/chats", None),
            ("list, after 900,000 chats", f"{served.base}/api/v1/sessions/{BIG_SESSION}/chats?cursor={cursor}", None),
            ("list, first page (1k session)", f"{served.base}/api/v1/sessions/{SMALL_SESSION}/chats", None),
            ("PATCH", one, "patch.lua"),
        ]
        for name, target, script in cases:
            for kind, token in (("API key", key), ("JWT", jwt)):
                rows.append((f"{name}, {kind}",) + drive(target, token, seconds, connections, script))
                print(f"  {rows[-1][0]}: {rows[-1][1]:.0f} req/s")
        changes = f"{served.base}/api/v1/sessions/{{}}/changes?limit=100"
        for name, target in (("changes, from the start (1k session)", changes.format(SMALL_SESSION)),
                             ("changes, from the start (1M session)", changes.format(BIG_SESSION)),
                             ("changes, after 900,000 changes", changes.format(BIG_SESSION) + "&since="
                              + sync_feed.deep_since(env, BIG_SESSION, DEEP_AFTER))):
            rows.append((f"{name}, API key",) + drive(target, key, seconds, connections))
            print(f"  {rows[-1][0]}: {rows[-1][1]:.0f} req/s")
        rates = {"sync": sync_feed.sync_rate(served.base, env, "bench", chat_lines)}
        print(f"  sync of {sync_feed.SYNC_CHATS:,} chats over HTTP: {rates['sync']:,.0f} chats/s")
    finally:
        served.stop()
    rates["import"] = sync_feed.import_rate(env, "bench", chat_lines, flask_command)
    print(f"  import-chats of {sync_feed.SYNC_CHATS:,} lines: {rates['import']:,.0f} chats/s")
    baseline = sync_feed.BaselineCheckout(ROOT)
    served = Served("app:app", env, chdir=baseline.path)
    try:
        rows.append(("PATCH, API key, build before change stamping",)
                    + drive(f"{served.base}/api/v1/sessions/{BIG_SESSION}/chats/{ONE_JID}", key, seconds,
                            connections, "patch.lua"))
        print(f"  {rows[-1][0]}: {rows[-1][1]:.0f} req/s")
    finally:
        served.stop()
        baseline.remove()
    floors = []
    for name, target in (("floor: bare Flask + raw driver", "floor_flask:app"),
                         ("floor: plain WSGI + raw driver", "floor_wsgi:app")):
        served = Served(target, env, chdir=os.path.join(ROOT, "bench"))
        try:
            floors.append((name,) + drive(f"{served.base}/api/v1/sessions/{BIG_SESSION}/chats/{ONE_JID}", None,
                                          seconds, connections))
            print(f"  {floors[-1][0]}: {floors[-1][1]:.0f} req/s")
        finally:
            served.stop()
    return rows, floors, import_seconds, rates


def report(backend, rows, floors, import_seconds, rates):
    flask_floor = floors[0][1]
    print(f"\n### {backend}\n")
    print("| request | req/s | × bare Flask | p50 ms | p99 ms | non-2xx |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, rps, p50, p99, errors in floors + rows:
        print(f"| {name} | {rps:,.0f} | {rps / flask_floor:.2f} | {p50:.2f} | {p99:.2f} | {errors} |")
    by_name = {row[0]: row for row in rows}
    key_one, jwt_one = by_name["GET one chat, API key"], by_name["GET one chat, JWT"]
    small = by_name["list, first page (1k session), API key"][2]
    first = by_name["list, first page (1M session), API key"][2]
    deep = by_name["list, after 900,000 chats, API key"][2]
    print("\nTargets:")
    print(f"- GET one, API key ≥ 0.6× bare Flask: {key_one[1] / flask_floor:.2f}× "
          f"{'met' if key_one[1] >= 0.6 * flask_floor else 'MISSED'}")
    print(f"- GET one, JWT ≥ 0.95× API key: {jwt_one[1] / key_one[1]:.2f}× "
          f"{'met' if jwt_one[1] >= 0.95 * key_one[1] else 'MISSED'}")
    for label, p50 in (("first page", first), ("page after 900,000", deep)):
        print(f"- 1M session {label} p50 ≤ 1.3× 1k session first page p50: {p50 / small:.2f}× "
              f"{'met' if p50 <= 1.3 * small else 'MISSED'}")
    changes_small = by_name["changes, from the start (1k session), API key"][2]
    for label in ("from the start (1M session)", "after 900,000 changes"):
        p50 = by_name[f"changes, {label}, API key"][2]
        print(f"- changes page {label} p50 ≤ 1.3× 1k session's: {p50 / changes_small:.2f}× "
              f"{'met' if p50 <= 1.3 * changes_small else 'MISSED'}")
    floor = IMPORT_RATE_BEFORE_SYNC[backend]
    print(f"- sync over HTTP ≥ import-chats as it was before sync existed ({floor:,} chats/s): "
          f"{rates['sync']:,.0f} chats/s {'met' if rates['sync'] >= floor else 'MISSED'} "
          f"(import-chats in this run: {rates['import']:,.0f} chats/s, sync {rates['sync'] / rates['import']:.2f}× it)")
    patch_now, patch_before = by_name["PATCH, API key"][1], by_name["PATCH, API key, build before change stamping"][1]
    print(f"- PATCH with change stamping ≥ 0.9× the build before it: {patch_now / patch_before:.2f}× "
          f"{'met' if patch_now >= 0.9 * patch_before else 'MISSED'}")
    if import_seconds is not None:
        print(f"- import-chats of 1,000,000 lines ≤ 60 s: {import_seconds:.1f} s "
              f"{'met' if import_seconds <= 60 else 'MISSED'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    from identity_provider import IdentityProvider
    provider = IdentityProvider()
    print(f"machine: {os.cpu_count()} cores, {platform_line()}")
    results = [(backend,) + bench_backend(backend, args.seconds, args.connections, provider)
               for backend in args.backends.split(",")]
    for result in results:
        report(*result)
    provider.stop()


def platform_line():
    import platform
    return f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"


if __name__ == "__main__":
    main()
