"""Fan-out: a push's audience resolved to devices and stored as chunks, each one task.

The chunks hold the devices (ids, platforms and tokens) as they were, apart from the small
chunk documents that status reads. Re-running fan-out is safe: a push's chunks are stored once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pymongo.database import Database

from push.pushes import (
    CANCELLED,
    CHUNK_DEVICES,
    CHUNK_SIZE,
    CHUNKS,
    DONE,
    PUSHES,
    SCHEDULED,
    SENDING,
    chunk_docs,
    resolve_audience,
)


def _batches(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def plan_fan_out(db: Database, push_id: str) -> list[int]:
    """Store the chunks of a push (once) and return the numbers of those not done yet."""
    push = db[PUSHES].find_one({"_id": push_id})
    if push is None or push["status"] in (DONE, CANCELLED, SCHEDULED):
        return []
    if push.get("chunks") is None:
        targeted, chunks = 0, 0
        for members in _batches(resolve_audience(db, push["audience"]), CHUNK_SIZE):
            number, targeted, chunks = chunks, targeted + len(members), chunks + 1
            chunk_id = f"{push_id}|{number}"
            # The device list lives apart from the small chunk document, which status reads
            # and FerretDB scans on every lookup.
            db[CHUNK_DEVICES].replace_one(
                {"_id": chunk_id},
                {
                    "_id": chunk_id,
                    "push_id": push_id,
                    "devices": [d["_id"] for d in members],
                    "targets": members,
                },
                upsert=True,
            )
            db[CHUNKS].replace_one(
                {"_id": chunk_id}, {"_id": chunk_id, "push_id": push_id, "done": False}, upsert=True
            )
        status = SENDING if chunks else DONE
        db[PUSHES].update_one(
            {"_id": push_id},
            {"$set": {"targeted": targeted, "chunks": chunks, "status": status}},
        )
        return list(range(chunks))
    chunks = chunk_docs(db, push_id, push["chunks"], {"done": 1})
    return [number for number, chunk in chunks.items() if not chunk["done"]]
