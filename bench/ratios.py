"""A quick re-check of ratio targets, without make bench's seeding, imports and compared figures.

Serves Chatstore and the same-config floor on the bench's already-seeded database and drives chosen figures
beside their floor in turn (as make bench does), printing each round's ratio and the median.

    python bench/ratios.py --backend sqlite --what "GET one" --kind "API key" [--rounds 5]
"""
import argparse
import os
import statistics
import sys

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "tests")]

import run  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="sqlite")
    parser.add_argument("--what", default="GET one", choices=["GET one", "list page"])
    parser.add_argument("--kind", default="API key", choices=["API key", "JWT"])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from identity_provider import IdentityProvider
    provider = IdentityProvider()
    env = {**os.environ, "DATABASE_URL": run.URLS[args.backend], "SECRET_KEY": run.SECRET_KEY,
           "JWKS_URL": provider.url, "LOG_LEVEL": "WARNING", "WEB_CONCURRENCY": run.WORKERS}
    token = run.api_key(env) if args.kind == "API key" else provider.mint(
        {"org_id": "bench", "org_role": "admin"}, expires_in=3600)
    path = {"GET one": f"/api/v1/sessions/{run.BIG_SESSION}/chats/{run.ONE_JID}",
            "list page": f"/api/v1/sessions/{run.BIG_SESSION}/chats"}[args.what]
    app = run.Served("app:app", env)
    floor = run.Served("floor_flask:app", env, chdir=os.path.dirname(os.path.abspath(__file__)))
    ratios = []
    try:
        for _ in range(args.rounds):
            mine = run.drive(app.base + path, token, 5, 8)
            theirs = run.drive(floor.base + path, token, 5, 8)
            assert mine[3] == 0 and theirs[3] == 0, (mine, theirs)
            ratios.append(mine[0] / theirs[0])
            print(f"  {mine[0]:,.0f} / {theirs[0]:,.0f} req/s = {ratios[-1]:.2f}")
    finally:
        app.stop()
        floor.stop()
        provider.stop()
    print(f"{args.backend}, {args.what}, {args.kind}: median {statistics.median(ratios):.2f}x the same-config floor")


if __name__ == "__main__":
    main()
