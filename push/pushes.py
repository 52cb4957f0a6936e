"""Pushes: accepted once, their status, cancelling, scheduled release, expiry and indexes.
Fan-out into chunks is `push.fanout`; sending a chunk, `push.delivery`.

- A push is stored once; an idempotency key maps to the same push id (`_id` derived from the
  sending key and the idempotency key), so a retried request never sends twice.
- Counts come from the chunk summaries; a push is `done` when every chunk is, so its status
  never sticks in a running state.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from push.devices import DEVICES
from sync import membership

PUSHES = "push_notifications"
CHUNKS = "push_chunks"
CHUNK_DEVICES = "push_chunk_devices"
CLAIMS = "push_claims"
DELIVERIES = "push_deliveries"  # receipts: one per device a push was attempted for
CHUNK_SIZE = 1000
SCHEDULED, QUEUED, SENDING, DONE, CANCELLED = "scheduled", "queued", "sending", "done", "cancelled"


def push_id_for(sender: str, idempotency_key: str) -> str:
    """The id of the push a sender's idempotency key names: a retry finds the same push."""
    return hashlib.sha256(f"{sender}\x00{idempotency_key}".encode()).hexdigest()[:32]


def create_push(
    db: Database, sender: str, request: dict[str, Any], now: datetime | None = None
) -> tuple[str, bool, str]:
    """Store a push; return (push_id, created, status). The same idempotency key: same push."""
    now = now or datetime.now(UTC)
    key = request.get("idempotency_key")
    push_id = push_id_for(sender, key) if key else uuid.uuid4().hex
    send_at = (request.get("options") or {}).get("send_at")
    doc = {
        "_id": push_id,
        "sender": sender,
        "audience": request["audience"],
        "notification": request.get("notification"),
        "data": request.get("data"),
        "options": {k: v for k, v in (request.get("options") or {}).items() if k != "send_at"},
        "send_at": send_at,
        "status": SCHEDULED if send_at and send_at > now else QUEUED,
        "targeted": None,
        "chunks": None,
        "created_at": now,
    }
    try:
        db[PUSHES].insert_one(doc)
    except DuplicateKeyError:
        existing = db[PUSHES].find_one({"_id": push_id}, {"status": 1}) or {}
        return push_id, False, existing.get("status", QUEUED)
    return push_id, True, doc["status"]


def forget_push(db: Database, push_id: str) -> None:
    """Remove a push that could not be queued (the caller answered 503)."""
    db[PUSHES].delete_one({"_id": push_id})


TARGET = {"_id": 1, "platform": 1, "token": 1}


def resolve_audience(db: Database, audience: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The devices the audience names (id, platform, token), sorted by id, each once; read
    from a cursor in batches, so a million devices never sit in the worker's memory."""
    if "devices" in audience:
        query: dict[str, Any] = {"_id": {"$in": audience["devices"]}}
    elif "users" in audience:
        query = {"user": {"$in": audience["users"]}}
    elif "topic" in audience:
        query = {"topics": audience["topic"]}
    else:
        query = {"user": {"$in": membership.members_of(db, audience["scope"])}}
    last = None
    for device in db[DEVICES].find(query, TARGET).sort("_id", 1).batch_size(CHUNK_SIZE):
        if device["_id"] != last:  # sorted: a device matched twice comes twice in a row
            yield device
            last = device["_id"]


def chunk_docs(
    db: Database, push_id: str, count: int, projection: dict[str, int]
) -> dict[int, dict[str, Any]]:
    """A push's chunk documents by number, in one query: a range of the `_id` index (an `$in`
    of a thousand ids had SecantusDB test every chunk of every push against every id)."""
    if count == 0:
        return {}
    found = (
        (int(doc["_id"].rsplit("|", 1)[1]), doc)
        for doc in db[CHUNKS].find(of_push(push_id), projection)
    )
    return {number: doc for number, doc in found if number < count}


def _owned(push_id: str, sender: str | None) -> dict[str, Any]:
    """The query for a push as `sender` may see it (None: any sender's)."""
    return {"_id": push_id} if sender is None else {"_id": push_id, "sender": sender}


def status(db: Database, push_id: str, sender: str | None = None) -> dict[str, Any] | None:
    """The push's status and counts; None if there is none that `sender` sent."""
    push = db[PUSHES].find_one(_owned(push_id, sender))
    if push is None:
        return None
    counts = {"sent": 0, "failed": 0, "invalid": 0}
    for chunk in chunk_docs(db, push_id, push.get("chunks") or 0, {"counts": 1}).values():
        for name in counts:
            counts[name] += (chunk.get("counts") or {}).get(name, 0)
    targeted = push.get("targeted") or 0
    finished = push["status"] in (DONE, CANCELLED)
    pending = 0 if finished else targeted - sum(counts.values())
    return {
        "push_id": push_id,
        "status": push["status"],
        "counts": {"targeted": targeted, **counts, "pending": max(0, pending)},
        "created_at": push["created_at"],
        "send_at": push.get("send_at"),
    }


def cancel(db: Database, push_id: str, sender: str | None = None) -> tuple[str, bool] | None:
    """Cancel a push not yet done: (status after, whether this call cancelled it); None if
    there is no such push that `sender` sent."""
    push = db[PUSHES].find_one(_owned(push_id, sender), {"status": 1})
    if push is None:
        return None
    if push["status"] in (SCHEDULED, QUEUED, SENDING):
        db[PUSHES].update_one({"_id": push_id}, {"$set": {"status": CANCELLED}})
        return CANCELLED, True
    return push["status"], False


def due_pushes(db: Database, now: datetime, release: Callable[[str], None]) -> int:
    """Release scheduled pushes whose time has come (beat); return how many."""
    count = 0
    for push in db[PUSHES].find({"status": SCHEDULED, "send_at": {"$lte": now}}, {"_id": 1}):
        db[PUSHES].update_one(
            {"_id": push["_id"], "status": SCHEDULED}, {"$set": {"status": QUEUED}}
        )
        release(push["_id"])
        count += 1
    return count


def of_push(push_id: str) -> dict[str, Any]:
    """The claims or receipts of a push: their ids are `<push id>|<device id>`, a range of the
    `_id` index (`}` follows `|`)."""
    return {"_id": {"$gte": f"{push_id}|", "$lt": f"{push_id}}}"}}


def expire_pushes(db: Database, before: datetime) -> int:
    """Delete finished (done or cancelled) pushes created before `before`, with their chunks
    and delivery receipts; return how many pushes. Receipts go first, so a run cut short
    leaves a push that the next run finds again."""
    old = [
        p["_id"]
        for p in db[PUSHES].find(
            {"status": {"$in": [DONE, CANCELLED]}, "created_at": {"$lt": before}}, {"_id": 1}
        )
    ]
    for start in range(0, len(old), 100):
        ids = old[start : start + 100]
        for push_id in ids:
            db[DELIVERIES].delete_many(of_push(push_id))
            db[CLAIMS].delete_many(of_push(push_id))
        db[CHUNKS].delete_many({"push_id": {"$in": ids}})
        db[CHUNK_DEVICES].delete_many({"push_id": {"$in": ids}})
        db[PUSHES].delete_many({"_id": {"$in": ids}})
    return len(old)


def ensure_push_indexes(db: Database) -> None:
    """Indexes for audience resolution and scheduled sends (on MongoDB; FerretDB scans)."""
    db[DEVICES].create_index("user", name="user")
    db[DEVICES].create_index("topics", name="topics")
    db[PUSHES].create_index([("status", 1), ("send_at", 1)], name="status_send_at")
    db[PUSHES].create_index([("status", 1), ("created_at", 1)], name="status_created_at")
    for name in (DELIVERIES, CLAIMS):
        # Their ids start with the push id (`of_push`): a second index only cost every insert
        # (about 60 us per document on SecantusDB, two documents per device sent to).
        if "push_id" in db[name].index_information():
            db[name].drop_index("push_id")
    db[CHUNKS].create_index("push_id", name="push_id")
    db[CHUNK_DEVICES].create_index("push_id", name="push_id")
    db[DEVICES].create_index("last_seen", name="last_seen")
    db[DEVICES].create_index("client_id", name="client_id")  # devices.seen
