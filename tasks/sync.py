"""Sync tasks on the `sync` queue."""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task
from pymongo.errors import ConnectionFailure

from push import tickles
from sync import batches
from sync.faults import crash_point
from sync.leases import LeaseLost, LeaseUnavailable
from workers.celery_app import celery_app, engine_config, mongo, redis_client, settings

log = logging.getLogger(__name__)


@celery_app.task(
    name="sync.apply_batch",
    bind=True,
    soft_time_limit=240,
    time_limit=300,
    autoretry_for=(ConnectionFailure,),
    retry_backoff=True,
    max_retries=None,
)
def apply_batch(self: Task, batch_id: str) -> dict[str, Any]:
    """Apply one stored batch; re-running it after a crash or redelivery has no further effect."""
    try:
        status = batches.apply_batch(
            mongo().db,
            redis_client(),
            batch_id,
            engine_config(),
            crash_point=crash_point(redis_client()),
        )
    except LookupError:
        # The API removed a batch whose publish it could not confirm; the client was told 503.
        log.warning("batch %s does not exist; nothing to apply", batch_id)
        return {"batch_id": batch_id, "status": "missing"}
    except batches.GapPending as exc:
        # Earlier mutations of this client are still on their way: look again later, without
        # holding a worker (a delayed redelivery, not a sleep). The gap timeout ends the wait.
        # Native delayed delivery (quorum queues) counts whole seconds, from 1.
        delay = max(
            1, round(min(2 ** min(self.request.retries, 5), 30) * (0.5 + random.random() / 2))
        )
        log.info("batch %s waits: %s", batch_id, exc)
        raise self.retry(countdown=delay, max_retries=None) from None
    except (LeaseUnavailable, LeaseLost) as exc:
        log.info("batch %s: %r; retrying", batch_id, exc)
        raise self.retry(countdown=1 + random.randint(0, 1), max_retries=None) from None
    if status["status"] == batches.APPLIED:
        _tickle(batch_id)
    return {"batch_id": batch_id, "status": status["status"]}


def _tickle(batch_id: str) -> None:
    """Silent pushes to the other members of the shared scopes this batch changed."""
    batch = mongo().db[batches.BATCHES].find_one({"_id": batch_id})
    if batch is None:
        return
    for push_id in tickles.tickle_scopes(
        mongo().db, redis_client(), batch, settings().tickle_debounce_seconds
    ):
        celery_app.send_task("push.fan_out", args=[push_id], queue="push", routing_key="push")
