"""Housekeeping tasks on the `maintenance` queue, scheduled by celery beat (workers/schedule.py).

Each job takes a Redis lock for its run, so a second beat started by mistake, or a slow run
overlapping the next tick, never does the work twice at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sync import housekeeping
from tasks.publishing import publish_apply
from workers import queues
from workers.celery_app import celery_app, mongo, redis_client, settings

log = logging.getLogger(__name__)


def exclusive(job: str, ttl: int, work: Callable[[], int]) -> dict[str, Any]:
    lock = redis_client().lock(f"offgrid:job:{job}", timeout=ttl, blocking_timeout=0)
    if not lock.acquire():
        log.info("%s is already running elsewhere; skipped", job)
        return {"job": job, "skipped": True}
    try:
        count = work()
    finally:
        lock.release()
    # Every few seconds most jobs find nothing to do: say so only at DEBUG.
    log.log(logging.INFO if count else logging.DEBUG, "%s: %d", job, count)
    return {"job": job, "count": count}


def _sync_ready() -> int:
    """Messages ready on the `sync` queue (a passive declare: it creates nothing)."""
    with celery_app.connection_for_write() as conn:
        _, ready, _ = conn.default_channel.queue_declare(queue=queues.SYNC, passive=True)
    return int(ready)


@celery_app.task(name=queues.REQUEUE_STUCK_BATCHES.name, soft_time_limit=240, time_limit=300)
def requeue_stuck_batches() -> dict[str, Any]:
    older = timedelta(seconds=settings().stuck_batch_seconds)
    return exclusive(
        "requeue_stuck_batches",
        300,
        lambda: housekeeping.requeue_stuck_batches(mongo().db, publish_apply, older, _sync_ready),
    )


@celery_app.task(name=queues.EXPIRE_BATCHES.name, soft_time_limit=240, time_limit=300)
def expire_batches() -> dict[str, Any]:
    retention = timedelta(seconds=settings().batch_retention_seconds)
    return exclusive(
        "expire_batches", 300, lambda: housekeeping.expire_batches(mongo().db, retention)
    )


@celery_app.task(name=queues.PURGE_TOMBSTONES.name, soft_time_limit=840, time_limit=900)
def purge_tombstones() -> dict[str, Any]:
    horizon = timedelta(seconds=settings().tombstone_horizon_seconds)
    return exclusive(
        "purge_tombstones", 900, lambda: housekeeping.purge_tombstones(mongo().db, horizon)
    )
