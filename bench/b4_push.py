"""B4: one push to a topic of many devices, delivered to a local APNs, against raw httpx.

Engine: devices subscribed to one topic are loaded into the registry; one `POST /v1/push`
to the topic goes through the API, fan-out and chunk tasks on N worker processes (solo pool,
PUSH_SEND_CONCURRENCY sender threads each, each thread with its own HTTP/2 connection),
until the push reports `done`. Baseline: as many threads, each with its own raw `httpx`
HTTP/2 client, sending the same requests (same path, headers, payload and provider token)
for the same device tokens to the same APNs. Both go to one
APNs fake in its own process (HTTP/2 over TLS, checks the token and headers, counts
deliveries per device).
Ratio = engine notifications/s ÷ raw notifications/s (target ≥ 0.5). Worker RSS is read
before and after the engine run.

    ./dev services && set -a && . .dev/app.env && set +a
    .venv/bin/python -m bench.b4_push --devices 100000 --workers 2 --streams 8
"""

from __future__ import annotations

import argparse
import datetime
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pymongo import MongoClient

from bench.harness import (
    ROOT,
    Processes,
    bench_env,
    cpu_seconds,
    rss_mb,
    service_pids,
    start_api,
    start_workers,
)
from push.apns import APNsProvider, build_request
from push.base import tls_context
from push.devices import DEVICES, device_id
from tests.fakes.tls import server_certificate

TOPIC = "b4-news"
WARM_UP = 2000  # devices of a first push, before memory is read
LOAD_CHUNK = 5000


class FakeAPNs:
    """The counting APNs fake (tests/fakes/apns.py) in a subprocess of its own (it must not
    share our GIL); one Python process, so it caps near a thousand requests a second."""

    def __init__(self) -> None:
        directory = tempfile.mkdtemp(prefix="b4-apns-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.apns", directory],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.env: dict[str, str] = json.loads(self.proc.stdout.readline())

    def counts(self) -> dict[str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class GoAPNs(FakeAPNs):
    """tools/apns-standin: the same checks and counts in Go's HTTP/2 server, fast enough not
    to be what limits the engine. Built with the Go toolchain on first use."""

    def __init__(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="b4-apns-go-"))
        binary = directory / "apns-standin"
        subprocess.run(
            ["go", "build", "-o", str(binary), "."], cwd=ROOT / "tools" / "apns-standin",
            check=True,
        )  # fmt: skip
        ca_file, cert_file, key_file = server_certificate(directory)
        team_key = directory / "AuthKey.p8"
        team_key.write_bytes(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        ids = {"APNS_KEY_ID": "ABC123DEFG", "APNS_TEAM_ID": "DEF123GHIJ",
               "APNS_TOPIC": "dev.offgrid.example"}  # fmt: skip
        self.proc = subprocess.Popen(
            [str(binary), "-cert", str(cert_file), "-key", str(key_file),
             "-team-key", str(team_key), "-key-id", ids["APNS_KEY_ID"],
             "-team-id", ids["APNS_TEAM_ID"], "-topic", ids["APNS_TOPIC"]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        origin = json.loads(self.proc.stdout.readline())["origin"]
        self.env = {**ids, "APNS_KEY_FILE": str(team_key), "APNS_BASE_URL": origin,
                    "APNS_CA_FILE": str(ca_file)}  # fmt: skip


def load_devices(db: Any, tokens: list[str], topic: str) -> None:
    now = datetime.datetime.now(datetime.UTC)
    for start in range(0, len(tokens), LOAD_CHUNK):
        db[DEVICES].insert_many(
            [
                {
                    "_id": device_id("ios", token),
                    "user": f"b4-user-{i}",
                    "platform": "ios",
                    "token": token,
                    "topics": [topic],
                    "created_at": now,
                    "registered_at": now,
                    "last_seen": now,
                }
                for i, token in enumerate(tokens[start : start + LOAD_CHUNK], start)
            ]
        )


def engine_run(base: str, admin_key: str, fake: FakeAPNs, topic: str, expected: int) -> float:
    before = fake.counts()["total"]
    http = httpx.Client(timeout=60, headers={"X-API-Key": admin_key})
    start = time.perf_counter()
    reply = http.post(
        f"{base}/v1/push",
        json={
            "audience": {"topic": topic},
            "notification": {"title": "B4", "body": "one push, many devices"},
            "options": {"ttl": 3600},
        },
    )
    reply.raise_for_status()
    push_id = reply.json()["push_id"]
    while True:
        status = http.get(f"{base}/v1/push/{push_id}").json()
        if status["status"] == "done":
            break
        time.sleep(0.2)
    elapsed = time.perf_counter() - start
    sent = fake.counts()["total"] - before
    if status["counts"]["sent"] != expected or sent != expected:
        raise SystemExit(f"engine delivered {sent}, status {status['counts']}; want {expected}")
    return expected / elapsed


def raw_run(fake: FakeAPNs, tokens: list[str], lanes: int) -> float:
    """The same requests from `lanes` threads, each on its own HTTP/2 connection, as the
    workers' sender threads send them."""
    env = fake.env
    provider = APNsProvider(
        key_pem=Path(env["APNS_KEY_FILE"]).read_text(),
        key_id=env["APNS_KEY_ID"],
        team_id=env["APNS_TEAM_ID"],
        topic=env["APNS_TOPIC"],
        base_url=env["APNS_BASE_URL"],
    )
    bearer = f"bearer {provider.provider_token()}"
    provider.close()
    message = {
        "push_id": uuid.uuid4().hex,
        "notification": {"title": "B4", "body": "one push, many devices"},
        "data": None,
        "options": {"ttl": 3600},
        "expires_at": int(time.time()) + 3600,
    }
    body, headers = build_request(message, env["APNS_TOPIC"])
    content = json.dumps(body, separators=(",", ":")).encode()
    headers = {**headers, "authorization": bearer}
    failures: list[str] = []
    context = tls_context(env["APNS_CA_FILE"])

    def send(part: list[str]) -> None:
        with httpx.Client(http2=True, verify=context, timeout=10) as client:
            for token in part:
                url = f"{env['APNS_BASE_URL']}/3/device/{token}"
                try:
                    response = client.post(url, content=content, headers=headers)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    failures.append(str(response.status_code))

    threads = [threading.Thread(target=send, args=(tokens[i::lanes],)) for i in range(lanes)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"raw run: {len(failures)} failures, e.g. {failures[:5]}")
    return len(tokens) / elapsed


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(c) for c in children.read().split()]
    except OSError:
        return []


def _cpu(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--streams", type=int, default=8, help="PUSH_SEND_CONCURRENCY")
    parser.add_argument("--lanes", type=int, default=16, help="raw httpx threads")
    parser.add_argument("--standin", choices=("go", "python"), default="go")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw httpx baseline")
    parser.add_argument("--profile", help="py-spy a process during the run into this file")
    parser.add_argument("--profile-target", choices=("worker", "store"), default="worker")
    args = parser.parse_args()
    fake = GoAPNs() if args.standin == "go" else FakeAPNs()
    env = {
        **bench_env("b4"),
        **fake.env,
        "PUSH_RATE_LIMIT_IOS": "100000/second",
        "PUSH_SEND_CONCURRENCY": str(args.streams),
    }
    database = env["MONGODB_URL"].rsplit("/", 1)[1]
    client: MongoClient = MongoClient(env["MONGODB_URL"])
    client.drop_database(database)
    db = client[database]
    tokens = [secrets.token_hex(32) for _ in range(args.devices)]
    procs = Processes()
    try:
        workers = start_workers(procs, env, args.workers)
        base = start_api(procs, env, 18400)  # it makes the indexes, on empty collections
        api = procs.procs[-1].pid
        loaded = time.perf_counter()
        load_devices(db, tokens, TOPIC)
        loaded = time.perf_counter() - loaded
        load_devices(db, [secrets.token_hex(32) for _ in range(WARM_UP)], "b4-warm-up")
        # Warm up: connections, provider tokens and lazily imported modules in every worker.
        engine_run(base, env["ADMIN_API_KEY"], fake, "b4-warm-up", WARM_UP)
        before = sum(rss_mb(w.pid) for w in workers)
        pids = {
            "workers": [w.pid for w in workers],
            "api": [api, *_children(api)],
            **{name: [pid] for name, pid in service_pids().items()},
            "stand-in": [fake.proc.pid],
        }
        spy = None
        if args.profile:
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                 str(pids["workers"][0] if args.profile_target == "worker" else pids["store"][0]),
                 "--format", "raw", "--rate", "200", "--nonblocking",
                 "--threads", "-o", args.profile],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1)
        cpu_before, started = _cpu(pids), time.perf_counter()
        engine = engine_run(base, env["ADMIN_API_KEY"], fake, TOPIC, args.devices)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        elapsed = time.perf_counter() - started
        cpu = {k: (v - cpu_before[k]) / args.devices * 1000 for k, v in _cpu(pids).items()}
        stand_in_share = (_cpu(pids)["stand-in"] - cpu_before["stand-in"]) / elapsed
        after = sum(rss_mb(w.pid) for w in workers)
        raw = None
        if not args.no_raw:
            raw_cpu = time.process_time()
            raw = raw_run(fake, tokens, args.lanes)
            raw_cpu = (time.process_time() - raw_cpu) / args.devices * 1000
        duplicates = fake.counts()["duplicates"]
    finally:
        procs.stop()
        fake.stop()
    print(
        f"B4 push fan-out, {datetime.date.today()}, --devices {args.devices} "
        f"--workers {args.workers} --streams {args.streams} --standin {args.standin} "
        f"(devices loaded in {loaded:.0f} s)\n"
    )
    print(
        "| devices | engine notifications/s | raw httpx notifications/s (threads) "
        "| engine / raw | worker RSS before → after MB |"
    )
    print("| ---: | ---: | ---: | ---: | ---: |")
    raw_text = f"{raw:,.0f} ({args.lanes})" if raw else "not run"
    ratio = f"{engine / raw:.2f}" if raw else "-"
    print(
        f"| {args.devices:,} | {engine:,.0f} | {raw_text} | {ratio} | {before:.0f} → {after:.0f} |"
    )
    sending = sum(v for k, v in cpu.items() if k != "stand-in")
    print("\nCPU per notification during the engine run, ms:\n")
    print("| " + " | ".join(cpu) + " | sending side | raw httpx client |")
    print("| " + " | ".join("---:" for _ in range(len(cpu) + 2)) + " |")
    raw_cpu_text = f"{raw_cpu:.3f}" if raw else "-"
    print(
        "| "
        + " | ".join(f"{v:.3f}" for v in cpu.values())
        + f" | **{sending:.3f}** | {raw_cpu_text} |"
    )
    print(f"\nThe stand-in used {stand_in_share:.0%} of a core during the engine run.")
    # Each device got the engine's push once and the raw run's once: anything more is a bug.
    runs = 1 if args.no_raw else 2
    print(f"Deliveries beyond one per device per run: {duplicates - (runs - 1) * args.devices}")


if __name__ == "__main__":
    main()
