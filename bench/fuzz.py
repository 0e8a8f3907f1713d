"""make fuzz: schemathesis against the served /openapi.json, every phase and every check.

Serves the app with gunicorn on a fresh SQLite database holding two organizations, each with a session of
chats and a read,send,sync,admin API key, and runs schemathesis with both organizations as peers
(object_level_authorization). Settings and the few narrowed checks live in schemathesis.toml.

    python bench/fuzz.py [--max-time SECONDS]
"""
import argparse
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]

from run import Served, flask_command  # noqa: E402

ORGS = {"acme": "01JFV2Z0000000000000000001", "globex": "01JFV2Z0000000000000000002"}


# Keys made before the fuzzer's own, so the small ids it tries on DELETE /api/v1/api-keys/{id} revoke these
# rather than the key it is authenticated with.
FILLER_KEYS = 500


def seed(env, database_path):
    keys = {}
    flask_command(env, "init-db")
    for org in ORGS:
        flask_command(env, "create-org", org, "--id", org)
    with sqlite3.connect(database_path) as database:
        database.executemany(
            'INSERT INTO "api_key" ("org_id", "name", "digest", "capabilities", "created_at") VALUES (?, ?, ?, ?, ?)',
            [(list(ORGS)[n % 2], f"filler {n}", secrets.token_hex(32), "read", "2026-01-01 00:00:00")
             for n in range(FILLER_KEYS)])
    for org, session_id in ORGS.items():
        flask_command(env, "create-session", org, "--id", session_id)
        lines = [json.dumps({"jid": f"62812{n:04d}@{server}", "name": f"{org} {n}", "lastMessageAt": 1_700_000_000_000 + n})
                 + "\n" for n, server in enumerate(["s.whatsapp.net", "g.us", "lid", "newsletter", "broadcast"] * 4)]
        flask_command(env, "import-chats", session_id, "-", stdin_lines=lines)
        keys[org] = flask_command(env, "create-api-key", org, "--capabilities", "read,send,sync,admin")
        # A webhook of each org (a public address, never reached: no delivery process runs here), so the stateful
        # phase finds real webhook ids through the list's links, and tries each org's on the other.
        flask_command(env, "create-webhook", org, f"https://93.184.215.14/hooks/{org}", "--session", session_id)
    return keys


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", type=int, default=180)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="chatstore-fuzz-")
    database_path = os.path.join(workdir, "fuzz.db")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database_path}", "LOG_LEVEL": "WARNING",
           "WEB_CONCURRENCY": "2", "METRICS_TOKEN": secrets.token_hex(16)}
    keys = seed(env, database_path)
    auth_path = os.path.join(workdir, "auth.json")
    with open(auth_path, "w") as auth:
        json.dump({"auth": [{"name": org, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {key}"}]}
                            for org, key in keys.items()]}, auth)
    served = Served("app:app", env)
    try:
        result = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "schemathesis"), "run", served.base + "/openapi.json",
             "--checks", "all", "--max-time", str(args.max_time), "--workers", "1"],
            cwd=ROOT, env={**env, "CHATSTORE_FUZZ_AUTH": auth_path, **{f"FUZZ_SESSION_{org.upper()}": sid
                                                                          for org, sid in ORGS.items()}})
    finally:
        served.stop()
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
