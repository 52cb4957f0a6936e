"""B6: live pulls held by the web processes, woken by commits.

One gunicorn worker process (gevent, gunicorn.conf.py; `--web N` for more) and one Celery
worker. Separate load processes (asyncio, `--loaders`) hold N live pulls over S personal
scopes, one client each, and re-issue each one as soon as it is answered. Each pull asks
`Prefer: wait=N` with N drawn from 20 to 30 s, as apps with different settings and start
times would (with one N for all, the timeouts fall together in bursts). Meanwhile a writer
commits one batch every 0.2 s into a random scope. Reported: commit→reply latency p50/p99
(the server's histogram: from a commit's announcement to the reply it caused), RSS of the
serving processes per held pull, CPU per process, and the latency of a normal push (Prefer:
wait) + pull round trip while the pulls are held, against the same round trip with none held
(same run).

    ./dev services && set -a && . .dev/app.env && set +a
    .venv/bin/python -m bench.b6_live --held 1000 5000 --scopes 300
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import multiprocessing
import os
import random
import ssl
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt

from bench.harness import (
    Processes,
    bench_env,
    cpu_seconds,
    rss_mb,
    service_pids,
    start_api,
    start_workers,
)

PORT = 18160
# The web process gives freed heap back every 10 s (gunicorn.conf.py): RSS read after that
# shows what the held pulls keep (the first fifth's, before the rest arrive; all of them, at
# the end of the run); RSS read as they arrive also holds what their arrival freed.
SETTLE = 11
BASE = f"http://127.0.0.1:{PORT}"


def _token(secret: str, user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 7200}, secret, algorithm="HS256")


def _auth(secret: str, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(secret, user)}"}


def _mutation(client_id: str, scope: str, n: int) -> dict:
    return {
        "id": n, "scope": scope, "collection": "notes", "key": f"k{n}", "op": "put",
        "value": {"n": n}, "hlc": f"{int(time.time() * 1000):013d}-{n % 65536:04x}-{client_id}",
    }  # fmt: skip


def _round_trip(http: httpx.Client, headers: dict, client_id: str, n: int) -> float:
    scope = f"user:{client_id}"
    started = time.perf_counter()
    http.post(
        f"{BASE}/v1/sync/push",
        json={"client_id": client_id, "mutations": [_mutation(client_id, scope, n)]},
        headers={**headers, "Prefer": "wait=20"},
    ).raise_for_status()
    http.post(
        f"{BASE}/v1/sync/pull", json={"client_id": client_id, "scopes": {scope: None}},
        headers=headers,
    ).raise_for_status()  # fmt: skip
    return time.perf_counter() - started


def _round_trips(secret: str, count: int) -> float:
    client_id = f"rt{uuid.uuid4().hex[:12]}"
    headers = {"Authorization": f"Bearer {_token(secret, client_id)}"}
    with httpx.Client(timeout=60) as http:
        times = [_round_trip(http, headers, client_id, n + 1) for n in range(count)]
    return statistics.median(times)


_TLS = ssl.create_default_context()  # unused on http://, but httpx builds one per client


async def _holder(headers: dict, client_id: str, scope: str, stop: asyncio.Event) -> int:
    checkpoint = None
    answered = 0
    # A client (and pool) per holder: httpx scans its pool per request, so one shared pool of
    # thousands of connections would make the load process the bottleneck.
    async with httpx.AsyncClient(timeout=90, verify=_TLS) as http:
        while not stop.is_set():
            try:
                reply = await http.post(
                    f"{BASE}/v1/sync/pull",
                    json={"client_id": client_id, "scopes": {scope: checkpoint}},
                    headers={**headers, "Prefer": f"wait={random.randint(20, 30)}"},
                )
                checkpoint = reply.json()["scopes"][scope]["checkpoint"]
                answered += 1
            except (httpx.HTTPError, KeyError, ValueError):
                await asyncio.sleep(0.5)
    return answered


async def _holders(secret: str, pulls: list[tuple[str, str]], first: int, flags: Any) -> None:
    """Hold the first `first` pulls, the rest once `go` is set; stop when `stop` is."""
    go, stop_flag = flags
    stop = asyncio.Event()

    def start(part: list[tuple[str, str]]) -> list[asyncio.Task]:
        return [
            asyncio.create_task(_holder(_auth(secret, user), client_id, f"user:{user}", stop))
            for client_id, user in part
        ]

    tasks = start(pulls[:first])
    while not go.is_set():
        await asyncio.sleep(0.1)
    tasks += start(pulls[first:])
    while not stop_flag.is_set():
        await asyncio.sleep(0.2)
    stop.set()
    for task in tasks:
        task.cancel()


def _holder_process(secret: str, pulls: list[tuple[str, str]], first: int, flags: Any) -> None:
    asyncio.run(_holders(secret, pulls, first, flags))


def _writer(secret: str, users: list[str], stop: threading.Event, counts: list[int]) -> None:
    clients = {user: (f"wr{uuid.uuid4().hex[:12]}", 0) for user in users}
    with httpx.Client(timeout=30) as http:
        while not stop.is_set():
            user = random.choice(users)
            client_id, last = clients[user]
            clients[user] = (client_id, last + 1)
            try:
                http.post(
                    f"{BASE}/v1/sync/push",
                    json={"client_id": client_id,
                          "mutations": [_mutation(client_id, f"user:{user}", last + 1)]},
                    headers={"Authorization": f"Bearer {_token(secret, user)}"},
                ).raise_for_status()  # fmt: skip
                counts[0] += 1
            except httpx.HTTPError as exc:
                print(f"writer: {exc!r}")
            stop.wait(0.2)


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


def _serving_pids(master: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def _rss(pids: list[int]) -> float:
    return sum(rss_mb(pid) for pid in pids)


def _wait_until_held(held: int, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = httpx.get(f"{BASE}/metrics", timeout=30).text
        gauge = [line for line in text.splitlines() if line.startswith("offgrid_live_pulls_held ")]
        if gauge and float(gauge[0].split()[-1]) >= held:
            time.sleep(2)
            return
        time.sleep(0.5)
    raise SystemExit(f"fewer than {held} pulls were held after {seconds:.0f} s")


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def run(
    secret: str, held: int, scopes: int, seconds: float, master: int, pids: dict[str, int],
    loaders: int,
) -> dict:  # fmt: skip
    idle = _round_trips(secret, 20)
    users = [f"live{n}-{uuid.uuid4().hex[:6]}" for n in range(scopes)]
    web = _serving_pids(master)
    before = _rss(web)
    before_metrics = httpx.get(f"{BASE}/metrics", timeout=10).text
    pulls = [(f"h{n:06d}{uuid.uuid4().hex[:6]}", users[n % scopes]) for n in range(held)]
    context = multiprocessing.get_context("spawn")
    flags = (context.Event(), context.Event())  # go (hold the rest), stop
    # A fifth first: the RSS they add includes warming the process; the rest give the
    # marginal cost of a held pull.
    parts = [pulls[i::loaders] for i in range(loaders)]
    children = [
        context.Process(target=_holder_process, args=(secret, part, len(part) // 5, flags))
        for part in parts
    ]
    for child in children:
        child.start()
    try:
        early_held = sum(len(part) // 5 for part in parts)
        _wait_until_held(early_held)
        time.sleep(SETTLE)
        early_rss = _rss(web)
        flags[0].set()
        _wait_until_held(held)
        burst_rss = _rss(web)
        pids = {
            **{f"web{i}": pid for i, pid in enumerate(web)},
            **pids,
            **{f"load{i}": c.pid for i, c in enumerate(children)},
        }
        cpu_before, started = _cpu(pids), time.monotonic()
        stop, counts = threading.Event(), [0]
        writer = threading.Thread(target=_writer, args=(secret, users, stop, counts))
        writer.start()
        busy = _round_trips(secret, 20)
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        stop.set()
        writer.join()
        elapsed = time.monotonic() - started
        held_rss = _rss(web)  # the same pulls held (each re-issued when answered), settled
        cpu = {name: (t - cpu_before[name]) / elapsed for name, t in _cpu(pids).items()}
        text = httpx.get(f"{BASE}/metrics", timeout=10).text
    finally:
        flags[1].set()
        for child in children:
            child.join(30)
            if child.is_alive():
                child.kill()
    p50, p99, replies = _histogram_quantiles(text)
    _, _, replies_before = _histogram_quantiles(before_metrics)
    return {
        "held": held, "p50": p50, "p99": p99, "replies": replies - replies_before,
        "commits": counts[0], "rss_before": before, "rss_held": held_rss, "rss_burst": burst_rss,
        "marginal": (held_rss - early_rss) * 1024 / (held - early_held),
        "marginal_burst": (burst_rss - early_rss) * 1024 / (held - early_held),
        "idle": idle, "busy": busy, "cpu": cpu, "elapsed": elapsed,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--held", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--scopes", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--web", type=int, default=1, help="gunicorn worker processes")
    parser.add_argument("--loaders", type=int, default=2, help="load processes holding pulls")
    args = parser.parse_args()
    env = {**bench_env("b6"), "WEB_CONNECTIONS": str(max(args.held) + 200)}
    rows = []
    for held in args.held:
        procs = Processes()
        try:
            worker = start_workers(procs, env, 1)[0]
            start_api(procs, env, PORT, workers=args.web)
            master = procs.procs[-1].pid
            pids = {"worker": worker.pid, **service_pids()}
            rows.append(
                run(env["JWT_SECRET"], held, args.scopes, args.seconds, master, pids, args.loaders)
            )
        finally:
            procs.stop()
    print(f"B6 live pull, {datetime.date.today()}, {args.web} web process(es), "
          f"{args.scopes} scopes, "
          f"a commit every 0.2 s for {args.seconds:.0f} s, {os.cpu_count()} cores\n")  # fmt: skip
    print(
        "| held pulls | commit→reply p50 | p99 | replies / commits | RSS idle → held MB "
        "| KB per held pull (marginal; at once) | round trip idle → held ms | ratio |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        per_pull = (r["rss_held"] - r["rss_before"]) * 1024 / r["held"]
        print(
            f"| {r['held']:,} | {r['p50'] * 1000:.0f} ms | {r['p99'] * 1000:.0f} ms "
            f"| {r['replies']:,.0f} / {r['commits']} "
            f"| {r['rss_before']:.0f} → {r['rss_held']:.0f} "
            f"| {per_pull:.1f} ({r['marginal']:.1f}; {r['marginal_burst']:.1f}) "
            f"| {r['idle'] * 1000:.0f} → {r['busy'] * 1000:.0f} | {r['busy'] / r['idle']:.2f} |"
        )
    print("\nCPU while the writer ran (cores used, averaged over the run):\n")
    names = list(rows[0]["cpu"])
    print("| held pulls | seconds | " + " | ".join(names) + " |")
    print("| ---: | ---: | " + " | ".join("---:" for _ in names) + " |")
    for r in rows:
        print(f"| {r['held']:,} | {r['elapsed']:.0f} | "
              + " | ".join(f"{r['cpu'][n]:.2f}" for n in names) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
