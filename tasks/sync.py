"""Sync tasks on the `sync` queue."""

from __future__ import annotations

import logging
import math
import random
from typing import Any

from celery import Task
from pymongo.errors import ConnectionFailure
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from push import tickles
from sync import batches, chain
from sync.faults import crash_point
from sync.leases import LeaseLost, LeaseUnavailable
from workers.celery_app import (
    celery_app,
    engine_config,
    mongo,
    redis_client,
    settings,
    shutting_down,
)

log = logging.getLogger(__name__)

# A chain of one client's batches runs this long in one task, then hands the rest on.
CHAIN_BUDGET_SECONDS = 60


@celery_app.task(
    name="sync.apply_batch",
    bind=True,
    # Clients read a batch's status from the database; storing task states in Redis would
    # make applying depend on Redis (a state write that fails loses the message).
    ignore_result=True,
    soft_time_limit=240,
    time_limit=300,
    # The database or Redis (locks) unreachable: the batch waits for them, it does not fail.
    autoretry_for=(ConnectionFailure, RedisConnectionError, RedisTimeoutError),
    retry_backoff=True,
    retry_backoff_max=30,  # below sync.chain.LOST_AFTER_SECONDS: a live retry is never "lost"
    max_retries=None,
)
def apply_batch(self: Task, batch_id: str) -> dict[str, Any]:
    """Apply one stored batch, then the client's batches stored after it (`sync.chain`);
    re-running it after a crash or redelivery has no further effect."""
    db = mongo().db
    try:
        status = chain.apply_in_order(
            db,
            redis_client(),
            batch_id,
            engine_config(),
            budget_seconds=CHAIN_BUDGET_SECONDS,
            applied=_tickle,
            publish=_publish,
            stopping=shutting_down,
            crash_point=crash_point(redis_client()),
        )
    except LookupError:
        # The API removed a batch whose publish it could not confirm; the client was told 503.
        log.warning("batch %s does not exist; nothing to apply", batch_id)
        return {"batch_id": batch_id, "status": "missing"}
    except batches.WaitingForPredecessor as exc:
        # Parked: the worker that applies the batch before it goes on with this one.
        log.debug("batch %s waits for its predecessor: %s", batch_id, exc)
        return {"batch_id": batch_id, "status": "waiting"}
    except batches.GapPending as exc:
        # The ids before it have not arrived: look again when the gap timeout has run out (if
        # they arrive first, their worker applies this batch and that look finds it final).
        # Native delayed delivery (quorum queues) counts whole seconds, from 1.
        log.info("batch %s waits: %s", batch_id, exc)
        raise self.retry(countdown=max(1, math.ceil(exc.retry_in)), max_retries=None) from None
    except (LeaseUnavailable, LeaseLost) as exc:
        log.info("batch %s: %r; retrying", batch_id, exc)
        raise self.retry(countdown=1 + random.randint(0, 1), max_retries=None) from None
    return {"batch_id": batch_id, "status": status["status"]}


def _publish(batch_id: str) -> None:
    celery_app.send_task(
        "sync.apply_batch", args=[batch_id], queue="sync", routing_key="sync", task_id=batch_id
    )


def _tickle(batch_id: str) -> None:
    """Silent pushes to the other members of the shared scopes this batch changed."""
    batch = mongo().db[batches.BATCHES].find_one({"_id": batch_id})
    if batch is None:
        return
    for push_id in tickles.tickle_scopes(
        mongo().db,
        redis_client(),
        batch,
        settings().tickle_debounce_seconds,
        settings().tickle_ios_debounce_seconds,
    ):
        celery_app.send_task("push.fan_out", args=[push_id], queue="push", routing_key="push")
