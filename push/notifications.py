"""Push notifications: accept, fan out in chunks, deliver at most once per device, report.

- A push is stored once; an idempotency key maps to the same push id (`_id` derived from the
  sending key and the idempotency key), so a retried request never sends twice.
- Fan-out resolves the audience to device ids and stores chunks of them; each chunk is one
  task. Re-running fan-out or a chunk is safe.
- Before a device is sent to, its delivery record `<push>|<device>` is inserted: a second
  insert fails, so a retried chunk, or one whose worker died mid-way, never sends to a device
  twice (at most once; a device whose send was interrupted counts as failed).
- Counts come from the chunk summaries; a push is `done` when every chunk is, so its status
  never sticks in a running state.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from push.devices import DEVICES
from push.providers import Outcome, Provider
from sync import membership

PUSHES = "push_notifications"
CHUNKS = "push_chunks"
DELIVERIES = "push_deliveries"
CHUNK_SIZE = 500
CANCEL_CHECK_EVERY = 25
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


def resolve_audience(db: Database, audience: dict[str, Any]) -> list[str]:
    """Device ids the audience names, sorted, without duplicates."""
    if "devices" in audience:
        found = db[DEVICES].find({"_id": {"$in": audience["devices"]}}, {"_id": 1})
    elif "users" in audience:
        found = db[DEVICES].find({"user": {"$in": audience["users"]}}, {"_id": 1})
    elif "topic" in audience:
        found = db[DEVICES].find({"topics": audience["topic"]}, {"_id": 1})
    else:
        users = [m["user"] for m in membership.list_members(db, audience["scope"])]
        found = db[DEVICES].find({"user": {"$in": users}}, {"_id": 1})
    return sorted({d["_id"] for d in found})


def plan_fan_out(db: Database, push_id: str) -> list[int]:
    """Store the chunks of a push (once) and return the numbers of those not done yet."""
    push = db[PUSHES].find_one({"_id": push_id})
    if push is None or push["status"] in (DONE, CANCELLED, SCHEDULED):
        return []
    if push.get("chunks") is None:
        devices = resolve_audience(db, push["audience"])
        chunks = [devices[i : i + CHUNK_SIZE] for i in range(0, len(devices), CHUNK_SIZE)]
        for number, members in enumerate(chunks):
            db[CHUNKS].replace_one(
                {"_id": f"{push_id}|{number}"},
                {
                    "_id": f"{push_id}|{number}",
                    "push_id": push_id,
                    "devices": members,
                    "done": False,
                },
                upsert=True,
            )
        status = SENDING if chunks else DONE
        db[PUSHES].update_one(
            {"_id": push_id},
            {"$set": {"targeted": len(devices), "chunks": len(chunks), "status": status}},
        )
        return list(range(len(chunks)))
    chunks = _chunk_docs(db, push_id, push["chunks"], {"done": 1})
    return [number for number, chunk in chunks.items() if not chunk["done"]]


def _chunk_docs(
    db: Database, push_id: str, count: int, projection: dict[str, int]
) -> dict[int, dict[str, Any]]:
    """A push's chunk documents by number, in one query."""
    ids = [f"{push_id}|{n}" for n in range(count)]
    found = db[CHUNKS].find({"_id": {"$in": ids}}, projection) if ids else []
    return {int(doc["_id"].rsplit("|", 1)[1]): doc for doc in found}


def message_of(push: dict[str, Any]) -> dict[str, Any]:
    options = push.get("options") or {}
    created = push["created_at"]
    created = created if created.tzinfo else created.replace(tzinfo=UTC)
    return {
        "push_id": push["_id"],
        "notification": push.get("notification"),
        "data": push.get("data"),
        "options": options,
        "expires_at": int(created.timestamp()) + int(options.get("ttl", 86400)),
    }


@dataclass(frozen=True)
class ChunkResult:
    counts: dict[str, int]
    retry_in: float | None = None  # set when some devices asked to be tried again later


def _retry_delay(attempt: int, asked: float | None) -> float:
    """Exponential backoff with jitter, never shorter than the provider's Retry-After."""
    backoff = min(2**attempt, 300) * (0.5 + random.random() / 2)
    return max(backoff, asked or 0.0, 1.0)


def _describe(outcome: Outcome) -> str:
    return f"{outcome.reason}: {outcome.detail}" if outcome.detail else outcome.reason


class _Records:
    """Delivery records written in groups: one update per (status, reason) per group instead
    of one per device (FerretDB scans for every write by `_id`). A worker dying before a flush
    leaves those records `sending`, which counts as failed: at most once still holds."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._updates: dict[tuple[str, str], list[str]] = {}
        self._forget: list[str] = []

    def set(self, delivery_id: str, status: str, reason: str) -> None:
        self._updates.setdefault((status, reason), []).append(delivery_id)

    def forget(self, delivery_id: str) -> None:
        """Nothing was delivered: drop the claim so a later run may send it."""
        self._forget.append(delivery_id)

    def flush(self) -> None:
        for (status, reason), ids in self._updates.items():
            self._db[DELIVERIES].update_many(
                {"_id": {"$in": ids}}, {"$set": {"status": status, "reason": reason}}
            )
        if self._forget:
            self._db[DELIVERIES].delete_many({"_id": {"$in": self._forget}, "status": "sending"})
        self._updates, self._forget = {}, []


def send_chunk(
    db: Database,
    push_id: str,
    number: int,
    providers: dict[str, Provider],
    crash_point: Callable[[str], None] | None = None,
    now: datetime | None = None,
    rate_limit: Callable[[str], float | None] | None = None,
    observe: Callable[[str, Outcome], None] | None = None,
) -> ChunkResult:
    """Send one chunk; each device at most once. Devices whose provider said "not now" (429,
    5xx: nothing was delivered) are tried again after a delay, until the push's TTL ends.
    `rate_limit(platform)` returns seconds to wait when the shared send rate is used up: the
    chunk then pauses and is redelivered, the devices not yet sent to keeping their place."""
    hook = crash_point or (lambda _step: None)
    now = now or datetime.now(UTC)
    chunk = db[CHUNKS].find_one({"_id": f"{push_id}|{number}"})
    push = db[PUSHES].find_one({"_id": push_id})
    if chunk is None or push is None:
        return ChunkResult({})
    if chunk["done"]:
        return ChunkResult(chunk["counts"])
    message = message_of(push)
    expires = datetime.fromtimestamp(message["expires_at"], UTC)
    attempt = int(chunk.get("attempt", 0))
    retry_after: list[float] = []
    paused: float | None = None
    records = _Records(db)
    devices = {d["_id"]: d for d in db[DEVICES].find({"_id": {"$in": chunk["devices"]}})}
    for index, did in enumerate(chunk["devices"]):
        # A cancel is noticed within CANCEL_CHECK_EVERY sends, not re-read before each one.
        if index % CANCEL_CHECK_EVERY == 0:
            records.flush()
            if _cancelled(db, push_id):
                break
        device = devices.get(did)
        if device is not None and rate_limit is not None:
            paused = rate_limit(device["platform"])
            if paused is not None:
                break
        delivery_id = f"{push_id}|{did}"
        try:
            db[DELIVERIES].insert_one(
                {"_id": delivery_id, "push_id": push_id, "device_id": did, "status": "sending"}
            )
        except DuplicateKeyError:
            continue  # attempted before (a retried chunk): never twice
        if device is None:
            records.set(delivery_id, "invalid", "device unregistered")
            continue
        outcome = providers[device["platform"]].send(device, message)
        hook("push_after_send")  # the harshest moment to die: sent, not yet recorded
        if observe is not None:
            observe(device["platform"], outcome)
        if outcome.kind == "delivered":
            records.set(delivery_id, "sent", "")
        elif outcome.kind == "token_dead":
            records.set(delivery_id, "invalid", _describe(outcome))
            _prune(db, device, outcome.dead_since)
        elif outcome.kind == "retry":
            delay = _retry_delay(attempt, outcome.retry_after)
            if now + timedelta(seconds=delay) < expires:
                records.forget(delivery_id)
                retry_after.append(delay)
            else:
                records.set(delivery_id, "failed", f"expired: ttl passed ({_describe(outcome)})")
        else:
            records.set(delivery_id, "failed", f"{outcome.kind}: {_describe(outcome)}")
    records.flush()
    if (paused is not None or retry_after) and not _cancelled(db, push_id):
        if retry_after:
            db[CHUNKS].update_one({"_id": chunk["_id"]}, {"$set": {"attempt": attempt + 1}})
        return ChunkResult({}, retry_in=max([*retry_after, paused or 0.0, 1.0]))
    counts = _chunk_counts(db, push_id, chunk["devices"])
    db[CHUNKS].update_one({"_id": chunk["_id"]}, {"$set": {"done": True, "counts": counts}})
    _finish_if_done(db, push_id)
    return ChunkResult(counts)


def _prune(db: Database, device: dict[str, Any], dead_since: datetime | None) -> None:
    """Delete a dead token's device, unless it was registered again after the provider found
    it dead (APNs 410 timestamp): that registration is newer than the news."""
    query: dict[str, Any] = {"_id": device["_id"]}
    if dead_since is not None:
        query["registered_at"] = {"$lt": dead_since}
    db[DEVICES].delete_one(query)


def _chunk_counts(db: Database, push_id: str, device_ids: list[str]) -> dict[str, int]:
    counts = {"sent": 0, "failed": 0, "invalid": 0, "cancelled": 0}
    ids = [f"{push_id}|{d}" for d in device_ids]
    seen = {
        d["_id"]: d["status"] for d in db[DELIVERIES].find({"_id": {"$in": ids}}, {"status": 1})
    }
    for delivery_id in ids:
        status = seen.get(delivery_id)
        if status is None:
            counts["cancelled"] += 1
        elif status == "sending":  # interrupted mid-send: not retried, so it failed
            counts["failed"] += 1
        else:
            counts[status] += 1
    return counts


def _cancelled(db: Database, push_id: str) -> bool:
    push = db[PUSHES].find_one({"_id": push_id}, {"status": 1})
    return push is None or push["status"] == CANCELLED


def _finish_if_done(db: Database, push_id: str) -> None:
    push = db[PUSHES].find_one({"_id": push_id})
    if push is None or push["status"] in (DONE, CANCELLED):
        return
    count = push.get("chunks") or 0
    chunks = _chunk_docs(db, push_id, count, {"done": 1})
    if len(chunks) == count and all(chunk["done"] for chunk in chunks.values()):
        db[PUSHES].update_one({"_id": push_id, "status": SENDING}, {"$set": {"status": DONE}})


def status(db: Database, push_id: str) -> dict[str, Any] | None:
    push = db[PUSHES].find_one({"_id": push_id})
    if push is None:
        return None
    counts = {"sent": 0, "failed": 0, "invalid": 0}
    for chunk in _chunk_docs(db, push_id, push.get("chunks") or 0, {"counts": 1}).values():
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


def cancel(db: Database, push_id: str) -> tuple[str, bool] | None:
    """Cancel a push not yet done: (status after, whether this call cancelled it); None if
    there is no such push."""
    push = db[PUSHES].find_one({"_id": push_id}, {"status": 1})
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
        db[DELIVERIES].delete_many({"push_id": {"$in": ids}})
        db[CHUNKS].delete_many({"push_id": {"$in": ids}})
        db[PUSHES].delete_many({"_id": {"$in": ids}})
    return len(old)


def ensure_push_indexes(db: Database) -> None:
    """Indexes for audience resolution and scheduled sends (on MongoDB; FerretDB scans)."""
    db[DEVICES].create_index("user", name="user")
    db[DEVICES].create_index("topics", name="topics")
    db[PUSHES].create_index([("status", 1), ("send_at", 1)], name="status_send_at")
    db[PUSHES].create_index([("status", 1), ("created_at", 1)], name="status_created_at")
    db[DELIVERIES].create_index("push_id", name="push_id")
    db[CHUNKS].create_index("push_id", name="push_id")
    db[DEVICES].create_index("last_seen", name="last_seen")
