"""Does a MongoDB-compatible server keep the promises Offgrid relies on, and how fast is it?

Runs against whatever `MONGODB_URL` names (its own database `offgrid_store_probe`, dropped
first and after), so a user can check their own server before trusting it (docs/embedded-store.md):

- atomicity: threads doing `$inc` on one document must end at the exact total, and concurrent
  `find_one_and_update` `$inc`s must each see a distinct result;
- a `bulk_write` of upserts on existing documents must finish;
- speed: point upserts and reads by `_id`, a `$in` of 500 ids, and a page of 500 by
  `(scope, seq)` range in a small and a large scope.

    ./dev services && set -a && . .dev/app.env && set +a
    .venv/bin/python -m bench.store_probe --docs 110000
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

from pymongo import ASCENDING, MongoClient, ReturnDocument, UpdateOne

DATABASE = "offgrid_store_probe"


def _url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{DATABASE}", parts.query, parts.fragment))


def probe(url: str, docs: int, small: int) -> list[tuple[str, str]]:
    client: MongoClient = MongoClient(_url(url), tz_aware=True)
    client.drop_database(DATABASE)
    db = client[DATABASE]
    rows: list[tuple[str, str]] = []

    db.counter.insert_one({"_id": "c", "n": 0})

    def bump(_: int) -> None:
        for _ in range(300):
            db.counter.update_one({"_id": "c"}, {"$inc": {"n": 1}})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(bump, range(4)))
    rows.append(
        ("4 threads x 300 `$inc` on one document (want 1,200)", str(db.counter.find_one()["n"]))
    )

    db.tickets.insert_one({"_id": "t", "n": 0})
    seen: list[int] = []
    lock = threading.Lock()

    def take(_: int) -> None:
        doc = db.tickets.find_one_and_update(
            {"_id": "t"}, {"$inc": {"n": 1}}, return_document=ReturnDocument.AFTER
        )
        with lock:
            seen.append(doc["n"])

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(take, range(400)))
    rows.append(
        ("400 concurrent `find_one_and_update` `$inc`: distinct results", str(len(set(seen))))
    )

    records = db.records
    records.create_index([("scope", ASCENDING), ("seq", ASCENDING)])
    for start in range(0, docs, 10_000):
        records.insert_many(
            [
                {
                    "_id": f"{'small' if i < small else 'large'}|k{i}",
                    "scope": "small" if i < small else "large",
                    "seq": i,
                    "value": {"title": f"record {i}", "done": False},
                }
                for i in range(start, min(docs, start + 10_000))
            ]
        )

    started = time.perf_counter()
    records.bulk_write(
        [
            UpdateOne({"_id": f"large|k{i}"}, {"$set": {"x": 1}}, upsert=True)
            for i in range(small, small + 100)
        ]
    )
    rows.append(
        (
            "`bulk_write` of 100 upserts on existing documents",
            f"{time.perf_counter() - started:.2f} s",
        )
    )

    def rate(op: object, count: int) -> float:
        started = time.perf_counter()
        for i in range(count):
            op(i)  # type: ignore[operator]
        return count / (time.perf_counter() - started)

    step = max(1, docs // 500)
    upserts = rate(
        lambda i: records.update_one(
            {"_id": f"large|k{small + i * step % (docs - small)}"}, {"$set": {"y": i}}, upsert=True
        ),
        500,
    )
    reads = rate(
        lambda i: records.find_one({"_id": f"large|k{small + i * step % (docs - small)}"}), 500
    )
    rows.append(
        ("point upserts by `_id` / point reads by `_id`, per s", f"{upserts:,.0f} / {reads:,.0f}")
    )

    ids = [f"large|k{small + i * step % (docs - small)}" for i in range(500)]
    started = time.perf_counter()
    found = len(list(records.find({"_id": {"$in": ids}})))
    rows.append(
        (
            f"`find({{_id: {{$in: 500 ids}}}})` ({found} found)",
            f"{(time.perf_counter() - started) * 1000:,.0f} ms",
        )
    )

    def page_ms(scope: str, low: int, high: int) -> float:
        middle = (low + high) // 2
        started = time.perf_counter()
        list(
            records.find({"scope": scope, "seq": {"$gt": middle}}).sort("seq", ASCENDING).limit(500)
        )
        return (time.perf_counter() - started) * 1000

    rows.append(
        (
            f"page of 500 by `(scope, seq)` range, scope of {small:,} / {docs - small:,}",
            f"{page_ms('small', 0, small):,.0f} / {page_ms('large', small, docs):,.0f} ms",
        )
    )
    client.drop_database(DATABASE)
    client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=110_000)
    parser.add_argument("--small", type=int, default=10_000)
    args = parser.parse_args()
    url = os.environ.get("MONGODB_URL")
    if not url:
        raise SystemExit("MONGODB_URL is not set: `set -a; . .dev/app.env; set +a`")
    rows = probe(url, args.docs, args.small)
    print(f"| probe ({args.docs:,} documents) | result |\n| --- | ---: |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
