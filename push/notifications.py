"""Push notifications: accept, fan out in chunks, deliver at most once per device, report.

- A push is stored once; an idempotency key maps to the same push id (`_id` derived from the
  sending key and the idempotency key), so a retried request never sends twice.
- Fan-out resolves the audience to devices and stores chunks of them (ids, platforms and
  tokens as they were); each chunk is one task. Re-running fan-out or a chunk is safe. A
  chunk's first run sends to that snapshot; a retry, minutes later, reads the devices again.
- Before a device is sent to, its claim `<push>|<device>` is inserted: a second insert fails,
  so a retried chunk, or one whose worker died mid-way, never sends to a device twice (at most
  once). The outcome goes to a receipt with the same id, written in groups after the sends; a
  claim without a receipt (the worker died in between) counts as failed.
- Counts come from the chunk summaries; a push is `done` when every chunk is, so its status
  never sticks in a running state.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from push.base import Outcome, Provider
from push.devices import DEVICES
from sync import membership

PUSHES = "push_notifications"
CHUNKS = "push_chunks"
CHUNK_DEVICES = "push_chunk_devices"
CLAIMS = "push_claims"
DELIVERIES = "push_deliveries"  # receipts: one per device a push was attempted for
CHUNK_SIZE = 500
GROUP = 25  # devices per cancel check, rate-limit take and receipt write
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


def resolve_audience(db: Database, audience: dict[str, Any]) -> list[dict[str, Any]]:
    """The devices the audience names (id, platform, token), sorted by id, each once."""
    if "devices" in audience:
        query: dict[str, Any] = {"_id": {"$in": audience["devices"]}}
    elif "users" in audience:
        query = {"user": {"$in": audience["users"]}}
    elif "topic" in audience:
        query = {"topics": audience["topic"]}
    else:
        users = [m["user"] for m in membership.list_members(db, audience["scope"])]
        query = {"user": {"$in": users}}
    found = {d["_id"]: d for d in db[DEVICES].find(query, TARGET)}
    return [found[did] for did in sorted(found)]


def plan_fan_out(db: Database, push_id: str) -> list[int]:
    """Store the chunks of a push (once) and return the numbers of those not done yet."""
    push = db[PUSHES].find_one({"_id": push_id})
    if push is None or push["status"] in (DONE, CANCELLED, SCHEDULED):
        return []
    if push.get("chunks") is None:
        devices = resolve_audience(db, push["audience"])
        chunks = [devices[i : i + CHUNK_SIZE] for i in range(0, len(devices), CHUNK_SIZE)]
        for number, members in enumerate(chunks):
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


class _Receipts:
    """Receipts inserted in groups (FerretDB writes one document per insert fast, but scans
    for every update), and claims to forget when nothing was delivered."""

    def __init__(self, db: Database, push_id: str) -> None:
        self._db = db
        self.push_id = push_id
        self._pending: list[dict[str, Any]] = []
        self._forget: list[str] = []
        self.counts = {"sent": 0, "failed": 0, "invalid": 0, "cancelled": 0}

    def add(self, device_id: str, status: str, reason: str) -> None:
        self._pending.append(
            {
                "_id": f"{self.push_id}|{device_id}",
                "push_id": self.push_id,
                "device_id": device_id,
                "status": status,
                "reason": reason,
            }
        )
        self.counts[status] += 1

    def forget(self, claim_id: str) -> None:
        """Nothing was delivered: drop the claim so a later run may send it."""
        self._forget.append(claim_id)

    def flush(self) -> None:
        if self._pending:
            try:
                self._db[DELIVERIES].insert_many(self._pending, ordered=False)
            except BulkWriteError as exc:  # a receipt written by a run that died after it
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
        if self._forget:
            self._db[CLAIMS].delete_many({"_id": {"$in": self._forget}})
        self._pending, self._forget = [], []


def send_chunk(
    db: Database,
    push_id: str,
    number: int,
    providers: dict[str, Provider] | Callable[[], dict[str, Provider]],
    crash_point: Callable[[str], None] | None = None,
    now: datetime | None = None,
    rate_limit: Callable[[str, int], float | None] | None = None,
    observe: Callable[[str, Outcome], None] | None = None,
    pool: Executor | None = None,
    group: int = GROUP,
) -> ChunkResult:
    """Send one chunk; each device at most once. Devices whose provider said "not now" (429,
    5xx: nothing was delivered) are tried again after a delay, until the push's TTL ends.

    Devices go in groups (of GROUP): the cancel check, the shared rate (`rate_limit(platform,
    count)` answers seconds to wait when a group would exceed it: the chunk then pauses and
    is redelivered, the devices not yet sent to keeping their place) and the receipts are per
    group; within a group the sends run on `pool`'s threads, each claimed before it is sent.
    `providers` may be a callable giving the calling thread its own provider clients: an
    HTTP/2 connection must not be shared between threads (one TLS socket read and written
    from two threads at once breaks the connection)."""
    hook = crash_point or (lambda _step: None)
    now = now or datetime.now(UTC)
    chunk = db[CHUNKS].find_one({"_id": f"{push_id}|{number}"})
    push = db[PUSHES].find_one({"_id": push_id})
    if chunk is None or push is None:
        return ChunkResult({})
    if chunk["done"]:
        return ChunkResult(chunk["counts"])
    listed = db[CHUNK_DEVICES].find_one({"_id": chunk["_id"]}) or {"devices": [], "targets": []}
    device_ids: list[str] = listed["devices"]
    message = message_of(push)
    expires = datetime.fromtimestamp(message["expires_at"], UTC)
    attempt = int(chunk.get("attempt", 0))
    if attempt == 0:
        targets = {d["_id"]: d for d in listed["targets"]}
    else:  # a retry, later: the registry may have changed since fan-out
        targets = {d["_id"]: d for d in db[DEVICES].find({"_id": {"$in": device_ids}})}

    def deliver(did: str) -> tuple[str, Outcome | str]:
        """Claim, then send; runs in the pool. A claim that exists means an earlier run
        attempted this device: it is never sent twice."""
        try:
            db[CLAIMS].insert_one({"_id": f"{push_id}|{did}", "push_id": push_id})
        except DuplicateKeyError:
            return did, "claimed before"
        device = targets.get(did)
        if device is None:
            return did, "unregistered"
        clients = providers() if callable(providers) else providers
        outcome = clients[device["platform"]].send(device, message)
        hook("push_after_send")  # the harshest moment to die: sent, not yet recorded
        if observe is not None:
            observe(device["platform"], outcome)
        return did, outcome

    retry_after: list[float] = []
    paused: float | None = None
    complete = True  # every device's outcome is known to this run (no earlier run's claims)
    receipts = _Receipts(db, push_id)
    for start in range(0, len(device_ids), group):
        members = device_ids[start : start + group]
        if _cancelled(db, push_id):
            complete = False
            break
        if rate_limit is not None:
            platforms = Counter(targets[d]["platform"] for d in members if d in targets)
            waits = [rate_limit(p, n) for p, n in sorted(platforms.items())]
            paused = max((w for w in waits if w is not None), default=None)
            if paused is not None:
                break
        results = pool.map(deliver, members) if pool else map(deliver, members)
        for did, outcome in results:
            if outcome == "claimed before":
                complete = False
            elif outcome == "unregistered":
                receipts.add(did, "invalid", "device unregistered")
            elif isinstance(outcome, Outcome):
                _settle(db, receipts, did, outcome, attempt, now, expires, retry_after)
        receipts.flush()
    if (paused is not None or retry_after) and not _cancelled(db, push_id):
        if retry_after:
            db[CHUNKS].update_one({"_id": chunk["_id"]}, {"$set": {"attempt": attempt + 1}})
        return ChunkResult({}, retry_in=max([*retry_after, paused or 0.0, 1.0]))
    # Devices left for a later run (throttled, paused) then cancelled are counted from storage.
    complete = complete and not retry_after and paused is None
    counts = receipts.counts if complete else _chunk_counts(db, push_id, device_ids)
    db[CHUNKS].update_one({"_id": chunk["_id"]}, {"$set": {"done": True, "counts": counts}})
    _finish_if_done(db, push_id)
    return ChunkResult(counts)


def _settle(
    db: Database,
    receipts: _Receipts,
    did: str,
    outcome: Outcome,
    attempt: int,
    now: datetime,
    expires: datetime,
    retry_after: list[float],
) -> None:
    """Record one provider outcome: a receipt, a pruned device, or a later retry."""
    if outcome.kind == "delivered":
        receipts.add(did, "sent", "")
    elif outcome.kind == "token_dead":
        receipts.add(did, "invalid", _describe(outcome))
        _prune(db, did, outcome.dead_since)
    elif outcome.kind == "retry":
        delay = _retry_delay(attempt, outcome.retry_after)
        if now + timedelta(seconds=delay) < expires:
            receipts.forget(f"{receipts.push_id}|{did}")
            retry_after.append(delay)
        else:
            receipts.add(did, "failed", f"expired: ttl passed ({_describe(outcome)})")
    else:
        receipts.add(did, "failed", f"{outcome.kind}: {_describe(outcome)}")


def _prune(db: Database, device_id: str, dead_since: datetime | None) -> None:
    """Delete a dead token's device, unless it was registered again after the provider found
    it dead (APNs 410 timestamp): that registration is newer than the news."""
    query: dict[str, Any] = {"_id": device_id}
    if dead_since is not None:
        query["registered_at"] = {"$lt": dead_since}
    db[DEVICES].delete_one(query)


def _chunk_counts(db: Database, push_id: str, device_ids: list[str]) -> dict[str, int]:
    """Counts from the stored claims and receipts, for a chunk that several runs worked on."""
    counts = {"sent": 0, "failed": 0, "invalid": 0, "cancelled": 0}
    ids = [f"{push_id}|{d}" for d in device_ids]
    receipts = {d["_id"]: d["status"] for d in db[DELIVERIES].find({"_id": {"$in": ids}})}
    claimed = {d["_id"] for d in db[CLAIMS].find({"_id": {"$in": ids}}, {"_id": 1})}
    for claim_id in ids:
        if claim_id in receipts:
            counts[receipts[claim_id]] += 1
        elif claim_id in claimed:  # interrupted mid-send: not retried, so it failed
            counts["failed"] += 1
        else:
            counts["cancelled"] += 1
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


def _owned(push_id: str, sender: str | None) -> dict[str, Any]:
    """The query for a push as `sender` may see it (None: any sender's)."""
    return {"_id": push_id} if sender is None else {"_id": push_id, "sender": sender}


def status(db: Database, push_id: str, sender: str | None = None) -> dict[str, Any] | None:
    """The push's status and counts; None if there is none that `sender` sent."""
    push = db[PUSHES].find_one(_owned(push_id, sender))
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
        db[CLAIMS].delete_many({"push_id": {"$in": ids}})
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
    db[DELIVERIES].create_index("push_id", name="push_id")
    db[CLAIMS].create_index("push_id", name="push_id")
    db[CHUNKS].create_index("push_id", name="push_id")
    db[CHUNK_DEVICES].create_index("push_id", name="push_id")
    db[DEVICES].create_index("last_seen", name="last_seen")
    db[DEVICES].create_index("client_id", name="client_id")  # devices.seen
