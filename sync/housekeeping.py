"""Sync housekeeping run by celery beat (SPEC §6). Each job is idempotent.

- `requeue_stuck_batches`: a batch still `queued`/`applying` long after any worker would have
  finished or given up on it lost its message (dead-lettered past the delivery limit, or a
  broker that lost it). Publishing it again is safe: applying a batch is idempotent.
- `expire_batches`: final batch records older than the retention are deleted.
- `purge_tombstones`: tombstones older than the horizon are deleted; a client whose
  checkpoint is that old gets `410 resync_required` instead of missing a delete.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pymongo.database import Database

from sync.batches import (
    APPLYING,
    BATCHES,
    FAILED,
    FINAL_STATUSES,
    QUEUED,
    behind_a_pending_batch,
)
from sync.chain import hand_off
from sync.scopelog import RECORDS, committed_seq

MAX_REQUEUES = 3


def requeue_stuck_batches(
    db: Database, publish: Callable[[str], None], older_than: timedelta, now: datetime | None = None
) -> int:
    """Publish stuck batches again; after MAX_REQUEUES, fail them so their status is final."""
    now = now or datetime.now(UTC)
    stuck = db[BATCHES].find(
        {"status": {"$in": [QUEUED, APPLYING]}, "created_at": {"$lt": now - older_than}},
        {"requeues": 1, "requeued_at": 1, "mutations": 1, "client_id": 1, "parked_at": 1},
    )
    count = 0
    for doc in stuck:
        if doc.get("parked_at") is not None:
            # Parked behind a stored predecessor, whose worker applies it next: leave it. If the
            # chain broke (the predecessor failed, or the client resent its ids elsewhere), give
            # it a message to find out.
            if not behind_a_pending_batch(db, doc["client_id"], doc["mutations"]):
                count += hand_off(db, doc["_id"], publish)
            continue
        last = doc.get("requeued_at")
        if (
            last is not None
            and (last if last.tzinfo else last.replace(tzinfo=UTC)) > now - older_than
        ):
            continue  # republished recently: give that message its time
        requeues = int(doc.get("requeues", 0))
        if requeues >= MAX_REQUEUES:
            # It kept failing on every worker: a poison batch. End it, so it is not "applying"
            # forever; the client sees `failed` and nothing of it was applied twice.
            db[BATCHES].update_one(
                {"_id": doc["_id"], "status": {"$in": [QUEUED, APPLYING]}},
                {"$set": {"status": FAILED, "reason": "undeliverable", "updated_at": now,
                          "results": [{"id": m["id"], "status": "rejected",
                                       "reason": "undeliverable"} for m in doc["mutations"]]}},
            )  # fmt: skip
            continue
        db[BATCHES].update_one(
            {"_id": doc["_id"]}, {"$set": {"requeued_at": now, "requeues": requeues + 1}}
        )
        publish(doc["_id"])
        count += 1
    return count


def expire_batches(db: Database, retention: timedelta, now: datetime | None = None) -> int:
    cutoff = (now or datetime.now(UTC)) - retention
    result = db[BATCHES].delete_many(
        {"status": {"$in": list(FINAL_STATUSES)}, "created_at": {"$lt": cutoff}}
    )
    return result.deleted_count


def purge_tombstones(db: Database, horizon: timedelta, now: datetime | None = None) -> int:
    cutoff = (now or datetime.now(UTC)) - horizon
    purged = 0
    for doc in db[RECORDS].find(
        {"deleted": True, "changed_at": {"$lt": cutoff}}, {"scope": 1, "seq": 1}
    ):
        if doc["seq"] > committed_seq(db, doc["scope"]):
            continue  # part of a commit in progress: the writer owns it
        # Delete only the version seen: if the record changed since, its seq differs.
        purged += db[RECORDS].delete_one({"_id": doc["_id"], "seq": doc["seq"]}).deleted_count
    return purged
