"""B5: a client's out-of-order batches, from "gap filled" to "last batch applied".

A phone that reconnects flushes its outbox in parallel requests, so its batches arrive in any
order. Here one client sends N batches of 5 mutations newest first (ids of batch 1 last); the
clock starts when batch 1 is accepted (the gap is filled) and stops when the newest batch is
applied. The baseline, in the same run and on the same stack, is the same N batches of another
client sent in order, from the first accepted to the last applied.

    ./dev services && set -a && . .dev/app.env && set +a
    .venv/bin/python -m bench.b5_chain --batches 8 200
"""

from __future__ import annotations

import argparse
import datetime
import time
import uuid

import httpx
import jwt

from bench.harness import Processes, bench_env, start_api, start_workers

BATCH = 5


def _client(base: str, secret: str) -> tuple[httpx.Client, str]:
    user = f"b5-{uuid.uuid4().hex[:8]}"
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, secret, algorithm="HS256")
    http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return http, user


def _batches(user: str, client_id: str, count: int) -> list[list[dict]]:
    now = int(time.time() * 1000)
    return [
        [
            {
                "id": i + 1,
                "scope": f"user:{user}",
                "collection": "notes",
                "key": f"k{i}",
                "op": "put",
                "value": {"i": i},
                "hlc": f"{now:013d}-{i:04x}-{client_id}",
            }
            for i in range(b * BATCH, (b + 1) * BATCH)
        ]
        for b in range(count)
    ]


def _push(http: httpx.Client, client_id: str, batch: list[dict]) -> str:
    reply = http.post("/v1/sync/push", json={"client_id": client_id, "mutations": batch})
    reply.raise_for_status()
    return reply.json()["batch_id"]


def _wait_applied(http: httpx.Client, batch_id: str) -> float:
    while True:
        if http.get(f"/v1/sync/batches/{batch_id}").json()["status"] == "applied":
            return time.perf_counter()
        time.sleep(0.005)


def run(base: str, secret: str, count: int, reverse: bool) -> float:
    http, user = _client(base, secret)
    client_id = f"b5{uuid.uuid4().hex[:12]}"
    batches = _batches(user, client_id, count)
    if reverse:
        ids = [_push(http, client_id, batch) for batch in reversed(batches[1:])]
        newest = ids[0]
        time.sleep(1)  # they are parked (or waiting) before the gap fills
        started = time.perf_counter()
        _push(http, client_id, batches[0])
    else:
        started = time.perf_counter()
        newest = [_push(http, client_id, batch) for batch in batches][-1]
    return _wait_applied(http, newest) - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 200])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    env = bench_env("b5")
    procs = Processes()
    rows = []
    try:
        start_workers(procs, env, args.workers)
        base = start_api(procs, env, 18150)
        run(base, env["JWT_SECRET"], 4, reverse=False)  # warm up
        for count in args.batches:
            in_order = run(base, env["JWT_SECRET"], count, reverse=False)
            reverse = run(base, env["JWT_SECRET"], count, reverse=True)
            rows.append((count, reverse, in_order))
    finally:
        procs.stop()
    print(f"B5 chain, {datetime.date.today()}, {args.workers} workers, batches of {BATCH}\n")
    print(
        "| batches | reverse order: gap filled → last applied, s "
        "| in order: first sent → last applied, s | ratio |"
    )
    print("| ---: | ---: | ---: | ---: |")
    for count, reverse, in_order in rows:
        print(f"| {count} | {reverse:.2f} | {in_order:.2f} | {reverse / in_order:.2f} |")


if __name__ == "__main__":
    main()
