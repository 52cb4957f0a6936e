"""A client's batches apply one after another, at the apply rate, however they arrived (G2, G7).

A batch that cannot run yet is *parked*: behind a stored predecessor, its message is dropped
and nothing looks at it again on a timer; behind ids not arrived yet, or with its client busy,
it keeps only a delayed retry (the safety net). The worker that applies a client's batch goes
on, in the same task, with the client's next batch if it is parked, and the next, until the
client has nothing parked, the task's time budget is spent or the worker is shutting down (then
the next parked batch gets a message). A batch whose message is on the `sync` queue is left to
that message: applying it ahead would leave the message behind, so the queue never holds more
messages than unapplied batches. So out-of-order batches apply the moment their gap fills, and a
backlog drains in one pass through the queue.

Nothing is lost by parking: a batch is stored before its message is published; the ledger
advance happens before the predecessor's worker looks for (and takes) the parked successor, and
the parking happens before the parked batch reads the ledger once more. So either that worker
finds the batch parked and takes it, or the batch sees the ledger advanced and hands itself a
message. A worker that dies mid-chain leaves
its message unacknowledged; the redelivery finds its batch final and goes on with the chain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database
from redis import Redis

from sync.batches import (
    APPLIED,
    APPLYING,
    BATCHES,
    QUEUED,
    EngineConfig,
    GapPending,
    WaitingForPredecessor,
    apply_batch,
    ledger,
    seen,
    unapplied_from,
)
from sync.leases import LeaseLost, LeaseUnavailable

# A batch a worker took this long ago, not parked, not final and not seen since, lost its
# message: every retry of a waiting batch that is not parked comes back sooner (lock
# contention 1-2 s, connection errors at most 30 s).
LOST_AFTER_SECONDS = 90


def next_batch(db: Database, client_id: str, last: int | None = None) -> str | None:
    """The client's oldest unapplied batch that may apply now: it holds the next id (or only
    ids already applied, when the client resent them in another batch). `last`: the ledger,
    when the caller has just read it."""
    last = ledger(db, client_id) if last is None else last
    found = unapplied_from(db, client_id, last + 1)
    return found[0]["_id"] if found else None


def park(db: Database, batch_id: str) -> None:
    """Record that the batch has no message on the `sync` queue (none at all, or a delayed
    retry): the worker that applies its predecessor may take it."""
    db[BATCHES].update_one({"_id": batch_id}, {"$set": {"parked_at": datetime.now(UTC)}})


def take(db: Database, batch_id: str) -> bool:
    """Take a parked batch to apply it now (once, however many workers race); False if it is
    not parked: its message is on the queue, and it applies when that comes."""
    # An update, not find_one_and_update (a collection scan on SecantusDB: sync.leases); only
    # one of the racing updates modifies the document.
    found = db[BATCHES].update_one(
        {"_id": batch_id, "parked_at": {"$exists": True}}, {"$unset": {"parked_at": ""}}
    )
    return found.modified_count == 1


def rescue_lost_head(
    db: Database,
    client_id: str,
    publish: Callable[[str], None],
    lost_after: float,
    last: int | None = None,
) -> bool:
    """Publish the client's next batch again if a worker took its message over `lost_after`
    seconds ago and nothing has seen it since: a retry lost with a broker that went down
    under it. Without this, the batches parked behind it would wait for the housekeeping
    sweep. A rescued batch is marked seen, so its followers do not all publish it."""
    head = next_batch(db, client_id, last)
    if head is None:
        return False
    now = datetime.now(UTC)
    taken = db[BATCHES].update_one(
        {
            "_id": head,
            "status": {"$in": [QUEUED, APPLYING]},
            "parked_at": {"$exists": False},
            "seen_at": {"$lt": now - timedelta(seconds=lost_after)},
        },
        {"$set": {"seen_at": now}},
    )
    if taken.modified_count != 1:
        return False
    publish(head)
    return True


def recheck_after_parking(
    db: Database, batch: dict[str, Any], publish: Callable[[str], None]
) -> None:
    """Look again once parked. The predecessor's worker may have looked for this batch after
    the gap check but before the parking, and found it unparked: then the ledger has moved,
    and the batch hands itself a message. Else, if the batch it waits for lost its message,
    rescue that one."""
    last = ledger(db, batch["client_id"])
    if batch["mutations"][0]["id"] <= last + 1:
        hand_off(db, batch["_id"], publish)
    else:
        rescue_lost_head(db, batch["client_id"], publish, LOST_AFTER_SECONDS, last)


def hand_off(db: Database, batch_id: str, publish: Callable[[str], None]) -> bool:
    """Publish a parked batch (once, however many callers race); False if it was not parked,
    so a message for it is on its way already."""
    if not take(db, batch_id):
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
    except (WaitingForPredecessor, GapPending):
        # The worker of its predecessor takes it (for a gap, a delayed retry is the safety net).
        park(db, batch_id)
        waiting = db[BATCHES].find_one({"_id": batch_id}, {"client_id": 1, "mutations": 1})
        if waiting is not None:
            recheck_after_parking(db, waiting, publish)
        raise
    except LeaseUnavailable as exc:
        if str(exc.args[0]).startswith("client:"):
            park(db, batch_id)  # the client's batch in hand goes on with this one
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
        if not take(db, following):
            break  # its message is on the queue: applying it now would leave that message behind
        try:
            chained = apply_batch(db, redis, following, config, crash_point=crash_point)
        except (WaitingForPredecessor, GapPending, LeaseUnavailable, LeaseLost):
            # Another worker holds the client (and goes on from there) or a scope: the batch
            # was taken from its parking, so give it a message to be tried again with.
            publish(following)
            break
        if chained["status"] != APPLIED:
            break
        applied(following)
        previous = following
    return status
