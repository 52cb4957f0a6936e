"""B2: pull catch-up and page latency, against raw pymongo on the same index, same run.

Records are loaded straight into a scope (bulk inserts, as a committed scope looks), then:
- catch-up: HTTP pulls (gunicorn) of the whole scope in pages, against a raw pymongo loop of
  `find({scope, seq > x}).sort(seq).limit(page)` on the same (scope, seq) index
  (target: ratio ≥ 0.6);
- page latency: one page from the middle of a small and of a large scope (target: large
  within 1.5 times small).

    ./dev services && set -a && . .dev/app.env && set +a
    .venv/bin/python -m bench.b2_pull --catchup 100000 --small 10000 --large 1000000
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import httpx
import jwt
from pymongo import ASCENDING, MongoClient

from bench.harness import Processes, bench_env, start_api
from sync.checkpoint import Checkpoint
from sync.indexes import ensure_indexes
from sync.scopelog import RECORDS, SCOPES

PAGE = 500


def load_scope(db: object, scope: str, count: int) -> None:
    for start in range(0, count, 10_000):
        db[RECORDS].insert_many(  # type: ignore[index]
            [
                {
                    "_id": f"{scope}|notes|k{i}",
                    "scope": scope,
                    "collection": "notes",
                    "key": f"k{i}",
                    "value": {"title": f"note {i}", "done": i % 2 == 0},
                    "deleted": False,
                    "version": 1,
                    "seq": i + 1,
                    "writers": [],
                }
                for i in range(start, min(start + 10_000, count))
            ],
            ordered=False,
        )
    db[SCOPES].replace_one({"_id": scope}, {"_id": scope, "committed_seq": count}, upsert=True)  # type: ignore[index]


def pull_page(http: httpx.Client, base: str, user: str, token: str, checkpoint: str | None) -> dict:
    reply = http.post(
        f"{base}/v1/sync/pull",
        json={"client_id": "bench-client", "scopes": {f"user:{user}": checkpoint}, "limit": PAGE},
        headers={"Authorization": f"Bearer {token}"},
    )
    return reply.json()["scopes"][f"user:{user}"]


def engine_catchup(base: str, user: str, token: str, count: int) -> float:
    checkpoint, got = None, 0
    start = time.perf_counter()
    with httpx.Client(timeout=300) as http:
        while True:
            page = pull_page(http, base, user, token, checkpoint)
            got += len(page["changes"])
            checkpoint = page["checkpoint"]
            if not page["has_more"]:
                break
    assert got == count, (got, count)
    return count / (time.perf_counter() - start)


def raw_catchup(db: object, scope: str, count: int) -> float:
    position, got = 0, 0
    start = time.perf_counter()
    while True:
        docs = list(
            db[RECORDS]
            .find({"scope": scope, "seq": {"$gt": position}})
            .sort("seq", ASCENDING)
            .limit(PAGE)  # type: ignore[index]
        )
        if not docs:
            break
        got += len(docs)
        position = docs[-1]["seq"]
    assert got == count
    return count / (time.perf_counter() - start)


def page_latency_ms(base: str, user: str, token: str, size: int, samples: int = 5) -> float:
    checkpoint = Checkpoint(size // 2, int(time.time() * 1000)).encode()
    timings = []
    with httpx.Client(timeout=300) as http:
        for _ in range(samples):
            start = time.perf_counter()
            page = pull_page(http, base, user, token, checkpoint)
            timings.append((time.perf_counter() - start) * 1000)
            assert len(page["changes"]) == PAGE
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--catchup", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()
    env = bench_env("b2")
    client: MongoClient = MongoClient(env["MONGODB_URL"])
    client.drop_database("offgrid_b2")
    db = client["offgrid_b2"]
    ensure_indexes(db)
    users = {"catchup": "b2-catchup", "small": "b2-small", "large": "b2-large"}
    tokens = {
        k: jwt.encode(
            {"sub": u, "exp": int(time.time()) + 86400}, env["JWT_SECRET"], algorithm="HS256"
        )
        for k, u in users.items()
    }
    procs = Processes()
    try:
        base = start_api(procs, env, 18200)
        load_scope(db, f"user:{users['catchup']}", args.catchup)
        engine = engine_catchup(base, users["catchup"], tokens["catchup"], args.catchup)
        raw = raw_catchup(db, f"user:{users['catchup']}", args.catchup)
        load_scope(db, f"user:{users['small']}", args.small)
        small = page_latency_ms(base, users["small"], tokens["small"], args.small)
        load_scope(db, f"user:{users['large']}", args.large)
        large = page_latency_ms(base, users["large"], tokens["large"], args.large)
    finally:
        procs.stop()
    server = env["MONGODB_URL"].split("/")[2]
    ratio, growth = engine / raw, large / small
    print(f"B2 pull, {datetime.date.today()}, pages of {PAGE}, server {server}\n")
    print("| measure | engine | raw pymongo | ratio |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| catch-up of {args.catchup:,}, records/s | {engine:,.0f} | {raw:,.0f} | {ratio:.2f} |")
    print(f"| page ms, scope of {args.small:,} (median of 5) | {small:,.1f} | | |")
    print(f"| page ms, scope of {args.large:,} (median of 5) | {large:,.1f} | | x{growth:.2f} |")


if __name__ == "__main__":
    main()
