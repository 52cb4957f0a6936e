"""Sync tasks on the `sync` queue."""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Any

from celery import Task
from pymongo.errors import ConnectionFailure
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from push import tickles
from sync import batches, chain
from sync.faults import crash_point
from sync.leases import LeaseLost, LeaseUnavailable
from tasks.publishing import publish_apply, publish_fan_out
from workers import queues
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
# How long a task keeps its message in hand while a lock is busy or Redis or the database is
# unreachable, before it falls back to a delayed retry (which goes to the back of the queue).
# Below the soft time limit; a batch waiting in hand stays `seen` (sync.chain.LOST_AFTER_SECONDS).
PATIENCE_SECONDS = 120
TRANSIENT = (
    LeaseUnavailable,
    LeaseLost,
    ConnectionFailure,
    RedisConnectionError,
    RedisTimeoutError,
)


@celery_app.task(
    name=queues.APPLY_BATCH.name,
    bind=True,
    # Clients read a batch's status from the database; storing task states in Redis would
    # make applying depend on Redis (a state write that fails loses the message).
    ignore_result=True,
    soft_time_limit=240,
    time_limit=300,
    # The database or Redis (locks) unreachable past PATIENCE_SECONDS: the batch waits for
    # them on a delayed retry, it does not fail.
    autoretry_for=(ConnectionFailure, RedisConnectionError, RedisTimeoutError),
    retry_backoff=True,
    retry_backoff_max=30,  # below sync.chain.LOST_AFTER_SECONDS: a live retry is never "lost"
    max_retries=None,
)
def apply_batch(self: Task, batch_id: str) -> dict[str, Any]:
    """Apply one stored batch, then the client's batches stored after it (`sync.chain`);
    re-running it after a crash or redelivery has no further effect.

    A busy lock (its holder finishes, or dies and the lock expires within LOCK_TTL) or an
    outage of Redis or the database is waited out with the message in hand: a retry would
    send the batch to the back of the queue, and with a backlog its client's whole chain would
    wait a full pass through it (its later batches parking one by one).
    """
    deadline = time.monotonic() + PATIENCE_SECONDS
    delay = 0.25
    while True:
        try:
            return _apply(self, batch_id)
        except TRANSIENT as exc:
            if time.monotonic() + delay > deadline or shutting_down():
                if isinstance(exc, (LeaseUnavailable, LeaseLost)):
                    log.info("batch %s: %r; retrying later", batch_id, exc)
                    raise self.retry(countdown=1 + random.randint(0, 1), max_retries=None) from None
                raise  # autoretry_for: a delayed retry with backoff
            log.info("batch %s: %r; trying again in %.2f s", batch_id, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _apply(self: Task, batch_id: str) -> dict[str, Any]:
    db = mongo().db
    try:
        status = chain.apply_in_order(
            db,
            redis_client(),
            batch_id,
            engine_config(),
            budget_seconds=CHAIN_BUDGET_SECONDS,
            applied=_tickle,
            publish=publish_apply,
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
    return {"batch_id": batch_id, "status": status["status"]}


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
        publish_fan_out(push_id)
