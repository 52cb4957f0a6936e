"""B1: end-to-end apply throughput against raw pymongo upserts, in the same run.

Engine: HTTP pushes (gunicorn) of put mutations from several clients, until every batch reads
applied (`GET /v1/sync/batches/{id}`). Baseline: the same documents upserted with raw pymongo
`bulk_write` into the same server. Ratio = engine mutations/s ÷ raw documents/s (target ≥ 0.5).
Worker RSS is read before and after the run (target: under +50 MB).

    ./dev services && set -a && . .dev/app.env && set +a
    .venv/bin/python bench/b1_apply.py --mutations 4000 --workers 1 2
"""

from __future__ import annotations

import argparse
import datetime
import time
import uuid

import httpx
import jwt
from pymongo import MongoClient, UpdateOne

from bench.harness import Processes, bench_env, rss_mb, start_api, start_workers

BATCH = 500
CLIENTS = 4
# FerretDB 1.24 wedges on multi-statement updates past ~100 statements; 50 is safe on both.
RAW_CHUNK = 50


def engine_run(
    base: str, env: dict[str, str], mutations: int, progress: list[tuple[float, int]] | None = None
) -> float:
    """Mutations/s from the first push until pulls show every mutation acknowledged;
    `progress` collects (seconds since start, mutations acknowledged) as the pulls see them."""
    run = uuid.uuid4().hex[:8]
    users = [f"bench-{run}-{i}" for i in range(CLIENTS)]
    headers = {
        u: {
            "Authorization": "Bearer "
            + jwt.encode(
                {"sub": u, "exp": int(time.time()) + 86400}, env["JWT_SECRET"], algorithm="HS256"
            )
        }
        for u in users
    }
    per_client = mutations // CLIENTS
    now = int(time.time() * 1000)
    http = httpx.Client(timeout=60)
    start = time.perf_counter()
    sent: dict[str, list[str]] = {u: [] for u in users}  # batch ids, in id order
    for first in range(1, per_client + 1, BATCH):
        for u in users:
            client_id = f"dev-{u}"
            batch = [
                {
                    "id": i,
                    "scope": f"user:{u}",
                    "collection": "notes",
                    "key": f"k{i}",
                    "op": "put",
                    "value": {"title": f"note {i}", "done": False, "n": i},
                    "hlc": f"{now:013d}-{i % 65536:04x}-{client_id}",
                }
                for i in range(first, min(first + BATCH, per_client + 1))
            ]
            reply = http.post(
                f"{base}/v1/sync/push",
                json={"client_id": client_id, "mutations": batch},
                headers=headers[u],
            )
            reply.raise_for_status()
            sent[u].append(reply.json()["batch_id"])
    # Done when each client's batches are applied, read as a client reads them: a client's
    # batches apply in id order, so its oldest one not yet final says how far it got. (A
    # pull's `last_mutation_id` reports the ledger only at the end of a pull chain: G4b.)
    acknowledged = dict.fromkeys(users, 0)
    while any(sent.values()):
        for u, waiting in sent.items():
            while waiting:
                body = http.get(f"{base}/v1/sync/batches/{waiting[0]}", headers=headers[u]).json()
                if body["status"] not in ("applied", "failed"):
                    break
                if body["status"] == "failed":
                    raise RuntimeError(f"batch {waiting[0]} failed: {body}")
                acknowledged[u] = body["last_mutation_id"]
                waiting.pop(0)
        if progress is not None:
            progress.append((time.perf_counter() - start, sum(acknowledged.values())))
        time.sleep(0.05 if progress is None else 1.0)
    return per_client * CLIENTS / (time.perf_counter() - start)


def raw_run(env: dict[str, str], mutations: int) -> float:
    db = MongoClient(env["MONGODB_URL"])[f"{env['MONGODB_URL'].rsplit('/', 1)[1]}"]
    db.drop_collection("bench_raw")
    run = uuid.uuid4().hex[:8]
    ops = [
        UpdateOne(
            {"_id": f"user:raw-{run}|notes|k{i}"},
            {
                "$set": {
                    "scope": f"user:raw-{run}",
                    "collection": "notes",
                    "key": f"k{i}",
                    "value": {"title": f"note {i}", "done": False, "n": i},
                    "version": 1,
                }
            },
            upsert=True,
        )
        for i in range(mutations)
    ]
    start = time.perf_counter()
    for chunk in range(0, len(ops), RAW_CHUNK):
        db.bench_raw.bulk_write(ops[chunk : chunk + RAW_CHUNK], ordered=False)
    return mutations / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mutations", type=int, default=4000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="skip the raw baseline (for long runs that only watch worker RSS)",
    )
    args = parser.parse_args()
    rows = []
    spans = []
    for count in args.workers:
        env = bench_env(f"b1w{count}")
        MongoClient(env["MONGODB_URL"]).drop_database(f"offgrid_b1w{count}")
        procs = Processes()
        try:
            workers = start_workers(procs, env, count)
            base = start_api(procs, env, 18100 + count)
            engine_run(base, env, CLIENTS * 10)  # warm up connections and indexes
            before = sum(rss_mb(w.pid) for w in workers)
            progress: list[tuple[float, int]] = []
            engine = engine_run(base, env, args.mutations, progress)
            after = sum(rss_mb(w.pid) for w in workers)
            raw = None if args.memory_only else raw_run(env, args.mutations)
        finally:
            procs.stop()
        rows.append((count, engine, raw, before, after))
        spans.append((count, _rates(progress, args.mutations)))
    print(
        f"B1 apply, {datetime.date.today()}, --mutations {args.mutations}, "
        f"{CLIENTS} clients, batches of {BATCH}\n"
    )
    print("| workers | engine mutations/s | raw upserts/s | ratio | worker RSS before → after MB |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for count, engine, raw, before, after in rows:
        raw_cell, ratio = (f"{raw:,.0f}", f"{engine / raw:.2f}") if raw else ("-", "-")
        print(f"| {count} | {engine:,.0f} | {raw_cell} | {ratio} | {before:.0f} → {after:.0f} |")
    print("\nApply rate over the run (mutations/s, from the batches' statuses):\n")
    print("| workers | first fifth | last fifth |")
    print("| ---: | ---: | ---: |")
    for count, (first, last) in spans:
        print(f"| {count} | {first:,.0f} | {last:,.0f} |")


def _rates(progress: list[tuple[float, int]], mutations: int) -> tuple[float, float]:
    """Mutations/s over the first and the last fifth of the mutations."""

    def at(count: float) -> float:  # seconds when `count` mutations were acknowledged
        return next((t for t, done in progress if done >= count), progress[-1][0])

    fifth = mutations / 5
    return fifth / max(at(fifth), 1e-9), fifth / max(at(mutations) - at(mutations - fifth), 1e-9)


if __name__ == "__main__":
    main()
