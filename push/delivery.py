"""Delivery: one chunk sent, at most once per device, with receipts.

- A chunk's first run sends to its snapshot of devices; a retry, minutes later, reads the
  devices again. Re-running a chunk is safe.
- Before a device is sent to, its claim `<push>|<device>` is inserted: a second insert fails,
  so a retried chunk, or one whose worker died mid-way, never sends to a device twice (at most
  once). Claims are inserted together for the sends about to go out at once: a whole group
  for a provider that multiplexes them on one connection (APNs), a wave of
  PUSH_SEND_CONCURRENCY for the others. A worker that dies loses at most those. The outcome
  goes to a receipt with the same id, written per group after the sends; a claim without a
  receipt (the worker died in between) counts as failed.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from pymongo.database import Database
from pymongo.errors import BulkWriteError

from push.base import Outcome, Provider
from push.devices import DEVICES
from push.pushes import (
    CANCELLED,
    CHUNK_DEVICES,
    CHUNKS,
    CLAIMS,
    DELIVERIES,
    DONE,
    PUSHES,
    SENDING,
    chunk_docs,
)

GROUP = 500  # devices per cancel check, rate-limit take and receipt write
IN_SLICE = 100  # ids per `$in` query


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


def no_crash(_step: str) -> None:
    pass


@dataclass(frozen=True)
class Sender:
    """What sending a chunk takes from the worker that runs it.

    `providers` gives the calling thread its own provider clients: an HTTP/2 connection must
    not be shared between threads (one TLS socket read and written from two threads at once
    breaks it). `rate_limit(platform, count)` answers the seconds to wait when a group would
    exceed the shared rate, or None. `observe` sees every provider outcome (metrics);
    `crash_point` is the fault-injection hook (sync.faults)."""

    providers: Callable[[], Mapping[str, Provider]]
    pool: Executor | None = None  # the sends of a wave run on its threads; None: in the caller
    concurrency: int = 1  # the pool's threads: devices claimed and sent per wave
    rate_limit: Callable[[str, int], float | None] | None = None
    observe: Callable[[str, Outcome], None] | None = None
    crash_point: Callable[[str], None] = no_crash
    group: int = GROUP  # devices per cancel check, rate-limit take and receipt write


class Skipped(Enum):
    """A device of the chunk not sent to by this run."""

    CLAIMED_BEFORE = "an earlier run claimed it: it is never sent twice"
    UNREGISTERED = "no longer registered"


@dataclass(frozen=True)
class _Chunk:
    id: str
    push_id: str
    device_ids: list[str]
    targets: dict[str, dict[str, Any]]  # device id -> device, as of fan-out (first run) or now
    message: dict[str, Any]
    expires: datetime
    attempt: int  # 0 on the first run; retries of throttled devices count up
    rerun: bool = False  # an earlier run paused or retried: some devices are claimed already


def _open_chunk(db: Database, push_id: str, number: int) -> _Chunk | ChunkResult:
    """The chunk to send, or its result when there is nothing left to do."""
    chunk = db[CHUNKS].find_one({"_id": f"{push_id}|{number}"})
    push = db[PUSHES].find_one({"_id": push_id})
    if chunk is None or push is None:
        return ChunkResult({})
    if chunk["done"]:
        return ChunkResult(chunk["counts"])
    listed = db[CHUNK_DEVICES].find_one({"_id": chunk["_id"]}) or {"devices": [], "targets": []}
    device_ids: list[str] = listed["devices"]
    attempt = int(chunk.get("attempt", 0))
    if attempt == 0:
        targets = {d["_id"]: d for d in listed["targets"]}
    else:  # a retry, later: the registry may have changed since fan-out
        targets = {
            d["_id"]: d
            for start in range(0, len(device_ids), IN_SLICE)
            for d in db[DEVICES].find({"_id": {"$in": device_ids[start : start + IN_SLICE]}})
        }
    message = message_of(push)
    return _Chunk(
        id=chunk["_id"],
        push_id=push_id,
        device_ids=device_ids,
        targets=targets,
        message=message,
        expires=datetime.fromtimestamp(message["expires_at"], UTC),
        attempt=attempt,
        rerun=attempt > 0 or bool(chunk.get("paused")),
    )


def _claim(
    db: Database, chunk: _Chunk, members: list[str], outcomes: dict[str, Outcome | Skipped]
) -> list[str]:
    """Claim `members` in one write; return those claimed now and still registered (the
    others get their `Skipped` in `outcomes`). A claim that exists means an earlier run
    attempted the device: it is never sent twice."""
    if not members:
        return []
    docs = [{"_id": f"{chunk.push_id}|{did}"} for did in members]
    taken: set[str] = set()
    try:
        db[CLAIMS].insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != 11000 for e in errors):
            raise
        taken = {members[e["index"]] for e in errors}
    claimed = []
    for did in members:
        if did in taken:
            outcomes[did] = Skipped.CLAIMED_BEFORE
        elif did not in chunk.targets:
            outcomes[did] = Skipped.UNREGISTERED
        else:
            claimed.append(did)
    return claimed


def _send_group(
    db: Database, chunk: _Chunk, sender: Sender, members: list[str]
) -> list[tuple[str, Outcome | Skipped]]:
    """Claim and send a group; each device's outcome, in order."""
    providers = sender.providers()

    def multiplexed(did: str) -> bool:
        device = chunk.targets.get(did)
        return device is not None and getattr(providers[device["platform"]], "multiplexed", False)

    outcomes: dict[str, Outcome | Skipped] = {}
    together = [did for did in members if multiplexed(did)]
    by_platform: dict[str, list[str]] = {}
    for did in _claim(db, chunk, together, outcomes):
        by_platform.setdefault(chunk.targets[did]["platform"], []).append(did)
    for platform, dids in by_platform.items():
        devices = [chunk.targets[did] for did in dids]
        sent = providers[platform].send_many(devices, chunk.message)  # type: ignore[attr-defined]
        sender.crash_point("push_after_send")  # the harshest moment to die: sent, not recorded
        for did, outcome in zip(dids, sent, strict=True):
            _observe(sender, platform, outcome)
            outcomes[did] = outcome
    one_by_one = [did for did in members if not multiplexed(did)]
    wave = max(1, sender.concurrency)
    for start in range(0, len(one_by_one), wave):
        claimed = _claim(db, chunk, one_by_one[start : start + wave], outcomes)
        send = functools.partial(_deliver, chunk, sender)
        sent = sender.pool.map(send, claimed) if sender.pool else map(send, claimed)
        outcomes.update(zip(claimed, sent, strict=True))
    return [(did, outcomes[did]) for did in members]


def _deliver(chunk: _Chunk, sender: Sender, did: str) -> Outcome:
    """One claimed device's send, on a pool thread with that thread's own provider client."""
    device = chunk.targets[did]
    outcome = sender.providers()[device["platform"]].send(device, chunk.message)
    sender.crash_point("push_after_send")  # the harshest moment to die: sent, not recorded
    _observe(sender, device["platform"], outcome)
    return outcome


def _observe(sender: Sender, platform: str, outcome: Outcome) -> None:
    if sender.observe is not None:
        sender.observe(platform, outcome)


def send_chunk(
    db: Database, push_id: str, number: int, sender: Sender, now: datetime | None = None
) -> ChunkResult:
    """Send one chunk; each device at most once. Devices whose provider said "not now" (429,
    5xx: nothing was delivered) are tried again after a delay, until the push's TTL ends.

    Devices go in groups (`sender.group`): the cancel check, the shared rate (when a group
    would exceed it the chunk pauses and is redelivered, the devices not yet sent to keeping
    their place) and the receipts are per group; within a group the devices are claimed,
    then sent (`_send_group`), each claimed before its request leaves."""
    now = now or datetime.now(UTC)
    chunk = _open_chunk(db, push_id, number)
    if isinstance(chunk, ChunkResult):
        return chunk
    retry_after: list[float] = []
    paused: float | None = None
    complete = True  # every device's outcome is known to this run (no earlier run's claims)
    receipts = _Receipts(db, push_id)
    for start in range(0, len(chunk.device_ids), sender.group):
        members = chunk.device_ids[start : start + sender.group]
        if _cancelled(db, push_id):
            complete = False
            break
        paused = _rate_wait(db, sender, chunk, members)
        if paused is not None:
            break
        for did, outcome in _send_group(db, chunk, sender, members):
            if outcome is Skipped.CLAIMED_BEFORE:
                complete = False
            elif outcome is Skipped.UNREGISTERED:
                receipts.add(did, "invalid", "device unregistered")
            else:
                _settle(db, receipts, did, outcome, chunk, now, retry_after)
        receipts.flush()
    if (paused is not None or retry_after) and not _cancelled(db, push_id):
        if retry_after:
            db[CHUNKS].update_one({"_id": chunk.id}, {"$set": {"attempt": chunk.attempt + 1}})
        elif not chunk.rerun:
            db[CHUNKS].update_one({"_id": chunk.id}, {"$set": {"paused": True}})
        return ChunkResult({}, retry_in=max([*retry_after, paused or 0.0, 1.0]))
    # Devices left for a later run (throttled, paused) then cancelled are counted from storage.
    complete = complete and not retry_after and paused is None
    counts = receipts.counts if complete else _chunk_counts(db, push_id, chunk.device_ids)
    db[CHUNKS].update_one({"_id": chunk.id}, {"$set": {"done": True, "counts": counts}})
    _finish_if_done(db, push_id)
    return ChunkResult(counts)


def _unclaimed(db: Database, push_id: str, members: list[str]) -> list[str]:
    ids = [f"{push_id}|{did}" for did in members]
    claimed = {
        d["_id"]
        for start in range(0, len(ids), IN_SLICE)
        for d in db[CLAIMS].find({"_id": {"$in": ids[start : start + IN_SLICE]}}, {"_id": 1})
    }
    return [did for did, claim in zip(members, ids, strict=True) if claim not in claimed]


def _rate_wait(db: Database, sender: Sender, chunk: _Chunk, members: list[str]) -> float | None:
    """Seconds to pause before this group (the shared rate is used up), or None."""
    if sender.rate_limit is None:
        return None
    if chunk.rerun:  # devices an earlier run claimed are not sent again: they take no rate
        members = _unclaimed(db, chunk.push_id, members)
    platforms = Counter(chunk.targets[d]["platform"] for d in members if d in chunk.targets)
    waits = [sender.rate_limit(p, n) for p, n in sorted(platforms.items())]
    return max((w for w in waits if w is not None), default=None)


def _settle(
    db: Database,
    receipts: _Receipts,
    did: str,
    outcome: Outcome,
    chunk: _Chunk,
    now: datetime,
    retry_after: list[float],
) -> None:
    """Record one provider outcome: a receipt, a pruned device, or a later retry."""
    if outcome.kind == "delivered":
        receipts.add(did, "sent", "")
    elif outcome.kind == "token_dead":
        receipts.add(did, "invalid", _describe(outcome))
        _prune(db, did, outcome.dead_since)
    elif outcome.kind == "retry":
        delay = _retry_delay(chunk.attempt, outcome.retry_after)
        if now + timedelta(seconds=delay) < chunk.expires:
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
    receipts: dict[str, str] = {}
    claimed: set[str] = set()
    # In slices: SecantusDB tests each found document against the whole `$in` list.
    for start in range(0, len(ids), IN_SLICE):
        part = {"_id": {"$in": ids[start : start + IN_SLICE]}}
        receipts.update((d["_id"], d["status"]) for d in db[DELIVERIES].find(part, {"status": 1}))
        claimed.update(d["_id"] for d in db[CLAIMS].find(part, {"_id": 1}))
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
    chunks = chunk_docs(db, push_id, count, {"done": 1})
    if len(chunks) == count and all(chunk["done"] for chunk in chunks.values()):
        db[PUSHES].update_one({"_id": push_id, "status": SENDING}, {"$set": {"status": DONE}})
