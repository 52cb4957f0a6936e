"""B8: MongoDB commands per pull and per push, and pull latency, with and without the Redis
cache of membership and API keys (CACHE_TTL).

In this process: two API apps on the same services, one with the cache off (CACHE_TTL=0),
one with it on; pymongo's command monitoring counts what each request sends to MongoDB.
A member of a shared scope pulls it (one scope, a page of 20 records), pushes one mutation
to it, and an API key with `push:send` sends a push to one user. Each request kind runs
`--requests` times per app after a warm-up; pull latency is measured alternating the two
apps, so both see the same services in the same state.

    ./dev services && set -a && . .dev/app.env && set +a
    .venv/bin/python -m bench.b8_reads --requests 500
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import threading
import time
import uuid
from collections import Counter
from typing import Any

import jwt
from pymongo import monitoring

from api import create_app
from bench.harness import bench_env
from config import load_settings

READS = {"find", "aggregate", "count", "countDocuments", "distinct", "getMore"}
WRITES = {"insert", "update", "delete", "findAndModify"}


class Commands(monitoring.CommandListener):
    """Counts the commands this process sends to MongoDB, by name."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self.counts[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)


def _per_request(before: Counter[str], after: Counter[str], n: int) -> tuple[float, float]:
    diff = after - before
    reads = sum(v for k, v in diff.items() if k in READS)
    writes = sum(v for k, v in diff.items() if k in WRITES)
    return reads / n, writes / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    commands = Commands()
    monitoring.register(commands)  # before the apps make their clients
    env = bench_env("b8")
    settings = {ttl: load_settings({**env, "CACHE_TTL": str(ttl)}) for ttl in (0, 30)}
    apps = {ttl: create_app(s).test_client() for ttl, s in settings.items()}
    admin = {"X-API-Key": env["ADMIN_API_KEY"]}
    cli = create_app(settings[30]).test_cli_runner()
    key = cli.invoke(args=["keys", "create", "b8", "--scope", "push:send"]).stdout.split()[0]

    user, client_id = f"b8-{uuid.uuid4().hex[:8]}", f"b8c{uuid.uuid4().hex[:12]}"
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, env["JWT_SECRET"], "HS256")
    auth = {"Authorization": f"Bearer {token}"}
    scope = f"team:{user}"
    http = apps[30]
    assert http.put(f"/v1/admin/scopes/{scope}/members/{user}", json={"role": "writer"},
                    headers=admin).status_code == 201  # fmt: skip
    counter = iter(range(10**9))

    def pull(c: Any) -> None:
        body = {"client_id": client_id, "scopes": {scope: None}, "limit": 20}
        assert c.post("/v1/sync/pull", json=body, headers=auth).status_code == 200

    def push(c: Any) -> None:
        n = next(counter)
        mutation = {"id": n + 1, "scope": scope, "collection": "notes", "key": f"n{n}",
                    "op": "put", "hlc": f"{int(time.time() * 1000):013d}-{n:04x}-{client_id}",
                    "value": {"title": f"note {n}"}}  # fmt: skip
        body = {"client_id": f"{client_id}-{n}", "mutations": [{**mutation, "id": 1}]}
        body["mutations"][0]["hlc"] = mutation["hlc"].replace(client_id, body["client_id"])
        assert c.post("/v1/sync/push", json=body, headers=auth).status_code == 202

    def notify(c: Any) -> None:
        body = {"audience": {"users": [user]}, "notification": {"title": "hi", "body": "there"}}
        reply = c.post("/v1/push", json=body, headers={"X-API-Key": key})
        assert reply.status_code == 202, reply.get_json()

    rows = []
    for name, request in (("sync pull", pull), ("sync push", push), ("notification push", notify)):
        row = [name]
        for ttl in (0, 30):
            for _ in range(20):
                request(apps[ttl])
            before = commands.snapshot()
            for _ in range(args.requests):
                request(apps[ttl])
            row.append(_per_request(before, commands.snapshot(), args.requests))
        rows.append(row)

    latency: dict[int, list[float]] = {0: [], 30: []}
    for _ in range(args.requests):
        for ttl in (0, 30):
            start = time.perf_counter()
            pull(apps[ttl])
            latency[ttl].append(time.perf_counter() - start)

    print(f"B8 MongoDB commands per request, {datetime.date.today()}, {args.requests} each\n")
    print("| request | reads, cache off | reads, cache on | writes, off | writes, on |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, off, on in rows:
        print(f"| {name} | {off[0]:.2f} | {on[0]:.2f} | {off[1]:.2f} | {on[1]:.2f} |")
    print("\n| pull latency | cache off | cache on | on / off |")
    print("| --- | ---: | ---: | ---: |")
    for label, pick in (("p50", 0.5), ("p90", 0.9)):
        off, on = (statistics.quantiles(latency[t], n=100)[int(pick * 100) - 1] for t in (0, 30))
        print(f"| {label} | {off * 1000:.2f} ms | {on * 1000:.2f} ms | {on / off:.2f} |")


if __name__ == "__main__":
    main()
