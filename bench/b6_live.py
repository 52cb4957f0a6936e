"""B6: live pulls held by one web process, woken by commits.

One gunicorn worker process (gevent, gunicorn.conf.py) and one Celery worker. A separate load
process (asyncio) holds N live pulls (`Prefer: wait=30`, one client each) over S personal
scopes and re-issues each one as soon as it is answered; meanwhile a writer commits one
batch every 0.2 s into a random scope. Reported: commit→reply latency p50/p99 (the server's
histogram: from a commit's announcement to the reply it caused), RSS of the serving process
per held pull, and the latency of a normal push (Prefer: wait) + pull round trip while the
pulls are held, against the same round trip with none held (same run).

    ./dev services && set -a && . .dev/app.env && set +a
    .venv/bin/python -m bench.b6_live --held 1000 5000 --scopes 300
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import random
import statistics
import time
import uuid
from pathlib import Path

import httpx
import jwt

from bench.harness import Processes, bench_env, rss_mb, start_api, start_workers

PORT = 18160
BASE = f"http://127.0.0.1:{PORT}"


def _token(secret: str, user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 7200}, secret, algorithm="HS256")


def _mutation(client_id: str, scope: str, n: int) -> dict:
    return {
        "id": n, "scope": scope, "collection": "notes", "key": f"k{n}", "op": "put",
        "value": {"n": n}, "hlc": f"{int(time.time() * 1000):013d}-{n % 65536:04x}-{client_id}",
    }  # fmt: skip


async def _round_trip(http: httpx.AsyncClient, headers: dict, client_id: str, n: int) -> float:
    scope = f"user:{client_id}"
    started = time.perf_counter()
    await http.post(
        f"{BASE}/v1/sync/push",
        json={"client_id": client_id, "mutations": [_mutation(client_id, scope, n)]},
        headers={**headers, "Prefer": "wait=20"},
    )
    await http.post(
        f"{BASE}/v1/sync/pull", json={"client_id": client_id, "scopes": {scope: None}},
        headers=headers,
    )  # fmt: skip
    return time.perf_counter() - started


async def _round_trips(secret: str, count: int) -> float:
    client_id = f"rt{uuid.uuid4().hex[:12]}"
    headers = {"Authorization": f"Bearer {_token(secret, client_id)}"}
    async with httpx.AsyncClient(timeout=60) as http:
        times = [await _round_trip(http, headers, client_id, n + 1) for n in range(count)]
    return statistics.median(times)


async def _holder(
    http: httpx.AsyncClient, headers: dict, client_id: str, scope: str, stop: asyncio.Event
) -> int:
    checkpoint = None
    answered = 0
    while not stop.is_set():
        try:
            reply = await http.post(
                f"{BASE}/v1/sync/pull",
                json={"client_id": client_id, "scopes": {scope: checkpoint}},
                headers={**headers, "Prefer": "wait=30"},
            )
            checkpoint = reply.json()["scopes"][scope]["checkpoint"]
            answered += 1
        except (httpx.HTTPError, KeyError, ValueError):
            await asyncio.sleep(0.5)
    return answered


async def _writer(secret: str, users: list[str], stop: asyncio.Event) -> int:
    commits = 0
    clients = {user: (f"wr{uuid.uuid4().hex[:12]}", 0) for user in users}
    async with httpx.AsyncClient(timeout=30) as http:
        while not stop.is_set():
            user = random.choice(users)
            client_id, last = clients[user]
            clients[user] = (client_id, last + 1)
            try:
                await http.post(
                    f"{BASE}/v1/sync/push",
                    json={"client_id": client_id,
                          "mutations": [_mutation(client_id, f"user:{user}", last + 1)]},
                    headers={"Authorization": f"Bearer {_token(secret, user)}"},
                )  # fmt: skip
                commits += 1
            except httpx.HTTPError as exc:
                print(f"writer: {exc!r}")
            await asyncio.sleep(0.2)
    return commits


def _histogram_quantiles(text: str) -> tuple[float, float, float]:
    buckets = []
    for line in text.splitlines():
        if line.startswith("offgrid_live_commit_to_reply_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0

    def quantile(q: float) -> float:
        rank, previous_le, previous_count = q * total, 0.0, 0.0
        for le, count in buckets:
            if count >= rank:
                if le == float("inf"):
                    return previous_le
                span = count - previous_count
                return previous_le + (le - previous_le) * (
                    (rank - previous_count) / span if span else 0
                )
            previous_le, previous_count = le, count
        return float("nan")

    return quantile(0.5), quantile(0.99), total


def _serving_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0])


async def run(secret: str, held: int, scopes: int, seconds: float, master: int) -> dict:
    idle = await _round_trips(secret, 20)
    users = [f"live{n}-{uuid.uuid4().hex[:6]}" for n in range(scopes)]
    before = rss_mb(_serving_pid(master))
    before_metrics = httpx.get(f"{BASE}/metrics", timeout=10).text
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=held + 10, max_keepalive_connections=held + 10)
    async with httpx.AsyncClient(timeout=90, limits=limits) as http:
        holders = []
        for n in range(held):
            user = users[n % scopes]
            headers = {"Authorization": f"Bearer {_token(secret, user)}"}
            holders.append(
                asyncio.create_task(
                    _holder(http, headers, f"h{n:06d}{uuid.uuid4().hex[:6]}", f"user:{user}", stop)
                )
            )
        await asyncio.sleep(10)  # every pull is held
        held_rss = rss_mb(_serving_pid(master))
        writer = asyncio.create_task(_writer(secret, users, stop))
        busy = await _round_trips(secret, 20)
        await asyncio.sleep(seconds)
        stop.set()
        commits = await writer
        text = httpx.get(f"{BASE}/metrics", timeout=10).text
        for task in holders:
            task.cancel()
    p50, p99, replies = _histogram_quantiles(text)
    _, _, replies_before = _histogram_quantiles(before_metrics)
    return {
        "held": held, "p50": p50, "p99": p99, "replies": replies - replies_before,
        "commits": commits, "rss_before": before, "rss_held": held_rss,
        "idle": idle, "busy": busy,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--held", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--scopes", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    env = {**bench_env("b6"), "WEB_CONNECTIONS": str(max(args.held) + 200)}
    rows = []
    for held in args.held:
        procs = Processes()
        try:
            start_workers(procs, env, 1)
            start_api(procs, env, PORT, workers=1)
            master = procs.procs[-1].pid
            rows.append(
                asyncio.run(run(env["JWT_SECRET"], held, args.scopes, args.seconds, master))
            )
        finally:
            procs.stop()
    print(f"B6 live pull, {datetime.date.today()}, one web process, {args.scopes} scopes, "
          f"a commit every 0.2 s for {args.seconds:.0f} s, {os.cpu_count()} cores\n")  # fmt: skip
    print(
        "| held pulls | commit→reply p50 | p99 | replies / commits | RSS idle → held MB "
        "| KB per held pull | round trip idle → held ms | ratio |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        per_pull = (r["rss_held"] - r["rss_before"]) * 1024 / r["held"]
        print(
            f"| {r['held']:,} | {r['p50'] * 1000:.0f} ms | {r['p99'] * 1000:.0f} ms "
            f"| {r['replies']:,.0f} / {r['commits']} "
            f"| {r['rss_before']:.0f} → {r['rss_held']:.0f} | {per_pull:.1f} "
            f"| {r['idle'] * 1000:.0f} → {r['busy'] * 1000:.0f} | {r['busy'] / r['idle']:.2f} |"
        )


if __name__ == "__main__":
    main()
