"""Fault drill: app-like clients push while RabbitMQ, Redis and a worker child are killed -9.

K clients behave like real apps: numbered mutations, batches of 5 `counters` puts of
`{"delta": 1}` to their own counter, the same batch resent after a 503, a 500 or a lost reply.
While they push, RabbitMQ is killed with SIGKILL and started again (through `./dev services`),
then Redis, then one prefork child of the worker. When the load stops the backlog must drain;
then every client's counter total must equal the last id it sent (exactly once), no batch may
have failed, and the `sync` queue must never have held more messages than unapplied batches
(plus a small constant). The drain rate is compared with a fault-free drain of a backlog on the
same stack, same run, measured after the drill. Beat runs housekeeping every 15 s
(`STUCK_BATCH_AFTER` 60 s).

    ./dev services && set -a && . .dev/app.env && set +a
    .venv/bin/python -m bench.drill --clients 8 --seconds 90 --own-stack
    (without --own-stack it kills and restarts the services ./dev runs)

`tests/workers/test_fault_drill.py` runs a short version against a stack of its own.
"""

from __future__ import annotations

import argparse
import datetime
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import amqp
import httpx
import jwt
from pymongo import MongoClient

from bench.harness import bench_env, wait_ready

ROOT = Path(__file__).resolve().parent.parent
BATCH = 5


@dataclass
class Stack:
    """Where the drill's services run, and how to kill and restart them."""

    env: dict[str, str]  # the app's environment (URLs, secrets)
    dev_env: dict[str, str]  # the environment `./dev services` needs for this stack
    state: Path  # its OFFGRID_DEV_STATE

    def pid(self, name: str) -> int:
        return int((self.state / "run" / f"{name}.pid").read_text())

    def kill(self, name: str) -> None:
        os.killpg(self.pid(name), signal.SIGKILL)

    def restart(self) -> float:
        started = time.monotonic()
        subprocess.run([str(ROOT / "dev"), "services"], env=self.dev_env, check=True,
                       capture_output=True, timeout=300)  # fmt: skip
        return time.monotonic() - started


PORTS = {
    "RABBITMQ_PORT": 5683,
    "RABBITMQ_MGMT_PORT": 15683,
    "REDIS_PORT": 6390,
    "MONGO_PORT": 27028,
}


@contextmanager
def own_stack(state: Path) -> Iterator[Stack]:
    """RabbitMQ, Redis and the MongoDB-compatible server started by `./dev services` on other
    ports with their own state, so killing them disturbs nothing else; stopped afterwards."""
    dev_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MONGODB_URL", "BROKER_URL", "REDIS_URL", "RABBITMQ_MANAGEMENT_URL")
    }
    dev_env.update({name: str(port) for name, port in PORTS.items()})
    dev_env["OFFGRID_DEV_STATE"] = str(state)
    dev_env["OFFGRID_RABBITMQ_NODE"] = "offgrid-drill@localhost"
    subprocess.run([str(ROOT / "dev"), "services"], env=dev_env, check=True, capture_output=True,
                   timeout=300)  # fmt: skip
    env = {
        "MONGODB_URL": f"mongodb://127.0.0.1:{PORTS['MONGO_PORT']}/drill",
        "BROKER_URL": f"amqp://guest:guest@127.0.0.1:{PORTS['RABBITMQ_PORT']}//",
        "REDIS_URL": f"redis://127.0.0.1:{PORTS['REDIS_PORT']}/0",
        "RABBITMQ_MANAGEMENT_URL": f"http://guest:guest@127.0.0.1:{PORTS['RABBITMQ_MGMT_PORT']}/",
        "JWT_SECRET": secrets.token_urlsafe(32),
        "ADMIN_API_KEY": secrets.token_urlsafe(32),
        "LOCK_TTL": "3",  # a killed child's locks free up soon
        "LOG_LEVEL": "INFO",
    }
    try:
        yield Stack(env, dev_env, state)
    finally:
        subprocess.run([str(ROOT / "dev"), "stop"], env=dev_env, capture_output=True, timeout=300)


@dataclass
class Tally:
    accepted_batches: int = 0
    accepted_mutations: int = 0
    status: dict[int, int] = field(default_factory=dict)
    lost_replies: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, code: int) -> None:
        with self.lock:
            self.status[code] = self.status.get(code, 0) + 1


class AppClient(threading.Thread):
    def __init__(self, base: str, secret: str, tally: Tally, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.user = f"drill-{uuid.uuid4().hex[:10]}"
        self.client_id = f"drill{uuid.uuid4().hex[:12]}"
        token = jwt.encode({"sub": self.user, "exp": int(time.time()) + 7200}, secret, "HS256")
        self.http = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        self.tally, self.stop_event = tally, stop
        self.last_sent = 0  # the highest id this client got a 202 for

    def _batch(self, first: int) -> list[dict[str, Any]]:
        now, me = int(time.time() * 1000), self.client_id
        return [
            {"id": i, "scope": f"user:{self.user}", "collection": "counters", "key": "c",
             "op": "put", "value": {"delta": 1}, "hlc": f"{now:013d}-{i % 65536:04x}-{me}"}
            for i in range(first, first + BATCH)
        ]  # fmt: skip

    def run(self) -> None:
        pending = self._batch(1)
        while not self.stop_event.is_set():
            try:
                reply = self.http.post(
                    "/v1/sync/push", json={"client_id": self.client_id, "mutations": pending}
                )
            except httpx.HTTPError:
                self.tally.count(0)  # a lost reply: the app resends the same batch
                time.sleep(0.5)
                continue
            self.tally.count(reply.status_code)
            if reply.status_code == 202:
                with self.tally.lock:
                    self.tally.accepted_batches += 1
                    self.tally.accepted_mutations += BATCH
                self.last_sent = pending[-1]["id"]
                pending = self._batch(self.last_sent + 1)
                time.sleep(0.05)
            else:  # 503 (Retry-After), 429, 500: the same batch again, later
                time.sleep(float(reply.headers.get("Retry-After", "1")))


def _queue_depth(env: dict[str, str]) -> int | None:
    """Messages ready on `sync` now (a passive declare: the broker's own count, not the
    management API's, which lags by its statistics interval)."""
    parts = urlsplit(env["BROKER_URL"])
    try:
        with amqp.Connection(
            f"{parts.hostname}:{parts.port or 5672}", userid=parts.username or "guest",
            password=parts.password or "guest", virtual_host=parts.path[1:] or "/",
            connect_timeout=2,
        ) as connection:  # fmt: skip
            return int(connection.channel().queue_declare("sync", passive=True).message_count)
    except Exception:  # the broker is down (the drill killed it): no sample
        return None


def _unapplied(db: Any, clients: list[str] | None = None) -> int:
    """Batches not final (of these clients). By status, each on an index: a `$in` of statuses
    or of batch ids is a collection scan on SecantusDB (1.5 s a call at 1,600 batches)."""
    mine = {"client_id": {"$in": clients}} if clients else {}
    return sum(
        db.sync_batches.count_documents({**mine, "status": status})
        for status in ("queued", "applying")
    )


def _start(stack: Stack, port: int, log_dir: Path) -> tuple[subprocess.Popen, ...]:
    # Housekeeping sooner than its defaults, to see recovery within the drill; metric samples
    # in a directory of the drill's own.
    metrics = log_dir / "drill-prometheus"
    metrics.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **stack.env, "HOUSEKEEPING_INTERVAL": "15", "STUCK_BATCH_AFTER": "60",
           "PROMETHEUS_MULTIPROC_DIR": str(metrics)}  # fmt: skip
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "api:create_app()"],
        cwd=ROOT, env=env, stdout=(log_dir / "drill-web.log").open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.celery_app:celery_app", "worker",
         "-Q", "sync,push,maintenance", "-c", "2", "-n", f"drill-{uuid.uuid4().hex[:6]}@%h",
         "--without-mingle", "--without-gossip", "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=(log_dir / "drill-worker.log").open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.celery_app:celery_app", "beat",
         "--schedule", str(log_dir / "drill-beat-schedule"), "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=(log_dir / "drill-beat.log").open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    wait_ready(f"http://127.0.0.1:{port}", web, 90)
    return web, worker, beat


def _drain(db: Any, apps: list[AppClient], timeout: float) -> float | None:
    """Seconds until no batch of these apps is unapplied; None if `timeout` ran out.

    Polled by point reads of the apps' ledgers (a count costs a document fetch per match on
    SecantusDB, and polled often it would slow the store the drill measures), confirmed by
    counting; counted every 15 s too, to see a backlog that ended in failed batches."""
    started = last_count = time.monotonic()
    clients = [app.client_id for app in apps]
    while True:
        ledgers = {
            doc["_id"]: doc.get("last_mutation_id", 0)
            for doc in db.sync_clients.find({"_id": {"$in": clients}}, {"last_mutation_id": 1})
        }
        caught_up = all(ledgers.get(app.client_id, 0) >= app.last_sent for app in apps)
        if caught_up or time.monotonic() - last_count > 15:
            last_count = time.monotonic()
            if not _unapplied(db, clients):
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.5)


def _baseline(base: str, secret: str, db: Any, worker: subprocess.Popen, clients: int) -> float:
    """Mutations/s of a fault-free backlog drain: push with the worker paused, then time it."""
    os.killpg(worker.pid, signal.SIGSTOP)
    tally, stop = Tally(), threading.Event()
    apps = [AppClient(base, secret, tally, stop) for _ in range(clients)]
    for app in apps:
        app.start()
    time.sleep(5)
    stop.set()
    for app in apps:
        app.join(15)
    os.killpg(worker.pid, signal.SIGCONT)
    seconds = _drain(db, apps, 600)
    if seconds is None:
        raise RuntimeError("a fault-free backlog did not drain in 600 s")
    return tally.accepted_mutations / max(seconds, 0.001)


def drill(
    stack: Stack,
    clients: int,
    seconds: float,
    port: int,
    log_dir: Path,
    drain_timeout: float = 900,
) -> dict[str, Any]:
    db = MongoClient(stack.env["MONGODB_URL"], tz_aware=True).get_default_database()
    web, worker, beat = _start(stack, port, log_dir)
    base, secret = f"http://127.0.0.1:{port}", stack.env["JWT_SECRET"]
    try:
        tally, stop = Tally(), threading.Event()
        apps = [AppClient(base, secret, tally, stop) for _ in range(clients)]
        excess: list[int] = []
        faults: list[str] = []

        def sample() -> None:
            while not stop.is_set() or _unapplied(db):
                depth = _queue_depth(stack.env)
                if depth is not None:
                    excess.append(depth - _unapplied(db))
                time.sleep(2)

        sampler = threading.Thread(target=sample, daemon=True)
        for app in apps:
            app.start()
        sampler.start()
        started = time.monotonic()
        for at, name in ((0.25, "rabbitmq"), (0.5, "redis"), (0.75, "worker child")):
            time.sleep(max(0.0, started + seconds * at - time.monotonic()))
            if name == "worker child":
                child = (
                    Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()[0]
                )
                os.kill(int(child), signal.SIGKILL)
                faults.append(f"{name} killed at {time.monotonic() - started:.0f} s")
            else:
                stack.kill(name)
                time.sleep(2)
                took = stack.restart()
                faults.append(f"{name} killed at {time.monotonic() - started - took:.0f} s, "
                              f"back after {took + 2:.0f} s")  # fmt: skip
        time.sleep(max(0.0, started + seconds - time.monotonic()))
        stop.set()
        for app in apps:
            app.join(30)
        unapplied_at_stop = _unapplied(db) * BATCH
        drain = _drain(db, apps, drain_timeout)
        sampler.join(10)
        totals = {}
        for app in apps:
            doc = db.sync_records.find_one({"_id": f"user:{app.user}|counters|c"}) or {}
            totals[app.client_id] = ((doc.get("value") or {}).get("total", 0), app.last_sent)
        mine = {"client_id": {"$in": [app.client_id for app in apps]}}
        failed = db.sync_batches.count_documents({**mine, "status": "failed"})
        left = _unapplied(db, [app.client_id for app in apps])
        # The fault-free rate on the same stack in the same state (SecantusDB's writes slow down
        # after ~10,000 of them: docs/embedded-store.md), so after the drill, not before it.
        baseline = _baseline(base, secret, db, worker, clients) if drain is not None else None
    finally:
        for proc in (web, worker, beat):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(60)
    return {
        "clients": clients, "seconds": seconds, "faults": faults,
        "accepted_batches": tally.accepted_batches,
        "accepted_mutations": tally.accepted_mutations, "status": dict(tally.status),
        "failed_batches": failed, "drain_seconds": drain, "unapplied_batches_left": left,
        "drain_rate": unapplied_at_stop / drain if drain and drain > 0.5 else None,
        "baseline_rate": baseline, "max_excess": max(excess, default=0),
        "totals": totals,
        "exactly_once": all(total == last for total, last in totals.values()),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--drain-timeout", type=float, default=900)
    parser.add_argument(
        "--own-stack", action="store_true", help="services of its own (other ports), not ./dev's"
    )
    args = parser.parse_args()
    log_dir = ROOT / ".dev" / "log"
    if args.own_stack:
        with tempfile.TemporaryDirectory() as state, own_stack(Path(state)) as stack:
            result = drill(stack, args.clients, args.seconds, 18170, log_dir, args.drain_timeout)
    else:
        stack = Stack(bench_env("drill"), {**os.environ}, ROOT / ".dev")
        result = drill(stack, args.clients, args.seconds, 18170, log_dir, args.drain_timeout)
    codes = ", ".join(f"{code or 'lost'}: {n}" for code, n in sorted(result["status"].items()))
    rate = result["drain_rate"]
    print(f"Fault drill, {datetime.date.today()}, {args.clients} clients, {args.seconds:.0f} s; "
          f"{'; '.join(result['faults'])}\n")  # fmt: skip
    print("| accepted batches (mutations) | replies | failed batches | drain after load, s "
          "| drain rate / fault-free rate | queue above unapplied, max "
          "| exactly once |")  # fmt: skip
    print("| ---: | --- | ---: | ---: | ---: | ---: | --- |")
    base = result["baseline_rate"]
    drained = (
        f"{result['drain_seconds']:.1f}"
        if result["drain_seconds"] is not None
        else f"not drained in {args.drain_timeout:.0f} s "
        f"({result['unapplied_batches_left']:,} left)"
    )
    ratio = f"{rate:,.0f} / {base:,.0f} = {rate / base:.2f}" if rate and base else "-"
    print(f"| {result['accepted_batches']:,} ({result['accepted_mutations']:,}) | {codes} "
          f"| {result['failed_batches']} | {drained} | {ratio} "
          f"| {result['max_excess']} | {result['exactly_once']} |")  # fmt: skip


if __name__ == "__main__":
    main()
