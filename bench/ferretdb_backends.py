"""Measure FerretDB 1.24's SQLite backend against its PostgreSQL backend.

Both run as the embedded binary that `./dev` builds (tools/ferretdb), side by side in the same
run: bulk inserts of 1000 documents, then single-document upserts by _id into that collection
(a worker applying mutations), a counter (find_one_and_update with $inc), point reads by _id,
and pages of a secondary-index range query. Multi-statement updates (bulk_write of UpdateOne)
are not measured: on FerretDB 1.24 embedded they hang past ~100 statements on both backends
(docs/ferretdb-backends.md), so Offgrid never sends them.

    ./dev postgres                       # builds FerretDB, starts PostgreSQL on :5433
    .venv/bin/python bench/ferretdb_backends.py [--singles 2000] [--bulk 20000]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pymongo import MongoClient, ReturnDocument

ROOT = Path(__file__).resolve().parent.parent
FERRETDB = ROOT / ".dev" / "bin" / "ferretdb"
PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5433/ferretdb")


def wait_port(port: int, proc: subprocess.Popen, seconds: float = 30) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ferretdb exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"ferretdb did not listen on {port}")


def timed(fn: Callable[[], int]) -> float:
    start = time.perf_counter()
    ops = fn()
    return ops / (time.perf_counter() - start)


def run_workload(url: str, singles: int, bulk: int) -> dict[str, float]:
    client: MongoClient = MongoClient(url)
    db = client["bench"]
    for name in ("records", "counters"):
        db.drop_collection(name)
    doc = {"scope": "user:alice", "title": "buy milk", "done": False, "tags": ["home"], "n": 0}

    def bulk_inserts() -> int:
        for start in range(0, bulk, 1000):
            db.records.insert_many(
                [{**doc, "_id": f"k{i}", "n": i} for i in range(start, min(start + 1000, bulk))],
                ordered=False,
            )
        return bulk

    def single_upserts() -> int:
        # Half update existing records, half insert new ones, into a collection of `bulk` docs.
        for i in range(singles):
            key = f"k{i * 2}" if i % 2 else f"new{i}"
            db.records.update_one({"_id": key}, {"$set": {**doc, "n": i}}, upsert=True)
        return singles

    def counter() -> int:
        for _ in range(singles):
            db.counters.find_one_and_update(
                {"_id": "user:alice"},
                {"$inc": {"seq": 1}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        return singles

    def point_reads() -> int:
        for i in range(singles):
            db.records.find_one({"_id": f"k{(i * 7919) % bulk}"})
        return singles

    def scope_pages() -> int:
        # A page of a scope by a secondary-index range: what a naive pull would do.
        db.records.create_index([("scope", 1), ("n", 1)])
        pages = 20
        for i in range(pages):
            list(
                db.records.find({"scope": "user:alice", "n": {"$gt": i * 100}}).sort("n").limit(100)
            )
        return pages

    results = {}
    for label, workload in (
        ("bulk insert, docs/s (insert_many of 1000)", bulk_inserts),
        ("single upsert by _id, ops/s", single_upserts),
        ("sequence counter $inc, ops/s", counter),
        ("point read by _id, ops/s", point_reads),
        ("page of 100 by (scope, n) index range, pages/s", scope_pages),
    ):
        results[label] = timed(workload)
        print(f"  {url} {label}: {results[label]:,.0f}", flush=True)
    client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--singles", type=int, default=2000)
    parser.add_argument("--bulk", type=int, default=10000, help="docs bulk-inserted first")
    args = parser.parse_args()
    if not FERRETDB.exists():
        raise SystemExit("run ./dev postgres first (it builds .dev/bin/ferretdb)")

    tmp = Path(tempfile.mkdtemp(prefix="ferretdb-bench-"))
    backends = {
        "sqlite": (27101, ["-handler", "sqlite", "-sqlite-url", f"file:{tmp}/"]),
        "postgresql": (27102, ["-handler", "postgresql", "-postgresql-url", PG_URL]),
    }
    figures: dict[str, dict[str, float]] = {}
    for name, (port, flags) in backends.items():
        proc = subprocess.Popen(
            [str(FERRETDB), "-listen", f"127.0.0.1:{port}", *flags],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(port, proc)
            figures[name] = run_workload(f"mongodb://127.0.0.1:{port}/", args.singles, args.bulk)
        finally:
            proc.terminate()
            proc.wait(10)
    shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"FerretDB 1.24.2 backends, {datetime.date.today()}, "
        f"--singles {args.singles} --bulk {args.bulk}\n"
    )
    print("| workload | sqlite | postgresql | sqlite / postgresql |")
    print("| --- | ---: | ---: | ---: |")
    for workload in figures["sqlite"]:
        s, p = figures["sqlite"][workload], figures["postgresql"][workload]
        print(f"| {workload} | {s:,.0f} | {p:,.0f} | {s / p:.2f} |")


if __name__ == "__main__":
    main()
