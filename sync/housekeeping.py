"""Sync housekeeping run by celery beat (SPEC §6). Each job is idempotent.

- `requeue_stuck_batches`: a batch whose message is provably gone (no worker saw it for
  `STUCK_BATCH_AFTER` while nothing waits on the `sync` queue) is published again; applying a
  batch is idempotent, so a duplicate costs one lookup.
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
from sync.chain import LOST_AFTER_SECONDS, hand_off, rescue_lost_head
from sync.scopelog import RECORDS, committed_seq

MAX_REQUEUES = 3


def requeue_stuck_batches(
    db: Database,
    publish: Callable[[str], None],
    older_than: timedelta,
    backlog: Callable[[], int],
    now: datetime | None = None,
) -> int:
    """Publish again the batches whose message is provably gone; return how many.

    A batch waiting its turn is never touched: one that is parked has its chain; one whose
    message is in line is alive while `backlog()` (messages ready on `sync`) is not 0. With the
    queue empty, a batch no worker has seen for `older_than` has no message left anywhere (every
    delayed retry is shorter: `GAP_TIMEOUT` and the task backoff are capped below it), so it is
    published again. `undeliverable` only ends a poison batch: one that workers took after each
    of MAX_REQUEUES republishes and never finished. A slow system never fails a batch.
    """
    now = now or datetime.now(UTC)
    cutoff = now - older_than
    # One query per status: a `$in` is a collection scan on SecantusDB (sync.batches).
    fields = ("requeues", "requeued_at", "seen_at", "updated_at", "mutations", "client_id",
              "parked_at")  # fmt: skip
    stuck = (
        doc
        for status in (QUEUED, APPLYING)
        for doc in db[BATCHES].find({"status": status, "created_at": {"$lt": cutoff}}, fields)
    )
    count = 0
    busy: bool | None = None
    for doc in stuck:
        seen, requeued = doc.get("seen_at"), doc.get("requeued_at")
        latest = max(m for m in (seen, requeued, doc.get("updated_at")) if m is not None)
        if latest > cutoff:
            continue  # a worker took it, or it was republished, lately: its message is alive
        if doc.get("parked_at") is not None:
            # Parked behind a stored predecessor, whose worker applies it next: leave it. If the
            # chain broke (the predecessor failed, or the client resent its ids elsewhere), give
            # it a message to find out.
            if not behind_a_pending_batch(db, doc["client_id"], doc["mutations"]):
                count += hand_off(db, doc["_id"], publish)
            elif rescue_lost_head(db, doc["client_id"], publish, LOST_AFTER_SECONDS):
                count += 1  # the batch it waits for lost its message
            continue
        if busy is None:
            busy = backlog() > 0
        if busy:
            continue  # its message may be in line behind the others: never multiply a backlog
        requeues = int(doc.get("requeues", 0))
        if (
            requeues >= MAX_REQUEUES
            and seen is not None
            and requeued is not None
            and seen > requeued
        ):
            # Workers took it after every republish and never finished it: a poison batch. End
            # it, so it is not "applying" forever; nothing of it was applied twice.
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
