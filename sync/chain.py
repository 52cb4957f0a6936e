"""A client's batches apply one after another, at the apply rate, however they arrived (G2, G7).

A batch whose predecessor (the stored batch holding the client's next id) is not applied yet is
*parked*: its message is dropped and nothing looks at it again on a timer. The worker that
applies a client's batch goes on, in the same task, with the stored batch that holds the next
id, and the next, until the client has nothing stored, the task's time budget is spent or the
worker is shutting down (then the next batch gets a message if it has none). So a backlog of
one client drains without a trip through the queue per batch, and a parked batch costs no
message at all.

Nothing is lost by parking: a batch is stored before its message is published, the gap check
and the ledger advance both happen under the client's lease, and the successor is looked up
after the ledger moved; so either the waiting batch saw the ledger already advanced, or the
worker that advanced it finds the waiting batch stored. A worker that dies mid-chain leaves
its message unacknowledged; the redelivery finds its batch final and goes on with the chain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database
from redis import Redis

from sync.batches import (
    APPLIED,
    APPLYING,
    BATCHES,
    CLIENTS,
    QUEUED,
    EngineConfig,
    GapPending,
    WaitingForPredecessor,
    apply_batch,
    seen,
)
from sync.leases import LeaseLost, LeaseUnavailable


def next_batch(db: Database, client_id: str) -> str | None:
    """The client's oldest unapplied batch that may apply now: it holds the next id (or only
    ids already applied, when the client resent them in another batch)."""
    ledger = db[CLIENTS].find_one({"_id": client_id}, {"last_mutation_id": 1}) or {}
    doc = db[BATCHES].find_one(
        {
            "client_id": client_id,
            "status": {"$in": [QUEUED, APPLYING]},
            "mutations.id": {"$lte": int(ledger.get("last_mutation_id", 0)) + 1},
        },
        {"_id": 1},
        sort=[("created_at", ASCENDING)],
    )
    return None if doc is None else doc["_id"]


def park(db: Database, batch_id: str) -> None:
    """Record that the batch has no message: its predecessor's worker will apply it."""
    db[BATCHES].update_one({"_id": batch_id}, {"$set": {"parked_at": datetime.now(UTC)}})


def hand_off(db: Database, batch_id: str, publish: Callable[[str], None]) -> bool:
    """Publish a parked batch (once, however many callers race); False if it was not parked,
    so a message for it is on its way already."""
    taken = db[BATCHES].find_one_and_update(
        {"_id": batch_id, "parked_at": {"$exists": True}}, {"$unset": {"parked_at": ""}}
    )
    if taken is None:
        return False
    publish(batch_id)
    return True


def apply_in_order(
    db: Database,
    redis: Redis,
    batch_id: str,
    config: EngineConfig,
    *,
    budget_seconds: float,
    applied: Callable[[str], None],
    publish: Callable[[str], None],
    stopping: Callable[[], bool] = lambda: False,
    crash_point: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Apply `batch_id`, then the client's stored batches that follow it; its final status.

    Raises what `apply_batch` raises for `batch_id` itself (`WaitingForPredecessor` after
    parking it). `applied(id)` is called for each batch that is applied; `publish(id)` hands
    the rest of the chain to a new message once `budget_seconds` are spent or `stopping()`
    says the worker is shutting down.
    """
    deadline = time.monotonic() + budget_seconds
    seen(db, batch_id)
    try:
        status = apply_batch(db, redis, batch_id, config, crash_point=crash_point)
    except WaitingForPredecessor:
        park(db, batch_id)
        raise
    if status["status"] == APPLIED:
        applied(batch_id)
    doc = db[BATCHES].find_one({"_id": batch_id}, {"client_id": 1})
    if doc is None:
        return status
    previous = batch_id
    while (following := next_batch(db, doc["client_id"])) is not None and following != previous:
        if time.monotonic() > deadline or stopping():
            hand_off(db, following, publish)
            break
        try:
            chained = apply_batch(db, redis, following, config, crash_point=crash_point)
        except (WaitingForPredecessor, GapPending, LeaseUnavailable, LeaseLost):
            # Another worker holds the client (and goes on from there) or a scope: make sure the
            # batch has a message to be tried again with.
            hand_off(db, following, publish)
            break
        if chained["status"] != APPLIED:
            break
        applied(following)
        previous = following
    return status
