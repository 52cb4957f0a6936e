"""Push tasks on the `push` queue: fan out a push into chunks, send a chunk."""

from __future__ import annotations

import functools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.errors import ConnectionFailure

from push import delivery, devices, fanout, pushes
from push.base import Outcome, Provider
from push.metrics import PUSH_OUTCOMES, PUSH_THROTTLED
from push.providers import providers_from_settings
from push.ratelimit import ProviderRateLimit
from sync.faults import crash_point
from tasks.maintenance import exclusive
from tasks.publishing import publish_chunk, publish_fan_out
from workers import queues
from workers.celery_app import celery_app, mongo, redis_client, settings

_local = threading.local()


def providers() -> dict[str, Provider]:
    """The calling thread's provider clients, made once per thread: their HTTP/2 connections
    are long-lived and never shared between threads."""
    clients = getattr(_local, "providers", None)
    if clients is None:
        clients = _local.providers = providers_from_settings(settings())
    return clients


@functools.cache
def send_pool() -> ThreadPoolExecutor | None:
    """PUSH_SEND_CONCURRENCY long-lived sender threads per worker process (None for 1)."""
    size = settings().push_send_concurrency
    return ThreadPoolExecutor(size, thread_name_prefix="push-send") if size > 1 else None


@functools.cache
def rate_limit() -> ProviderRateLimit:
    config = settings()
    return ProviderRateLimit(
        config.redis_url,
        {
            "ios": config.push_rate_limit_ios,
            "android": config.push_rate_limit_android,
            "web": config.push_rate_limit_web,
        },
    )


def _throttle(platform: str, count: int) -> float | None:
    wait = rate_limit().wait(platform, count)
    if wait is not None:
        PUSH_THROTTLED.labels(platform).inc()
    return wait


def _observe(platform: str, outcome: Outcome) -> None:
    PUSH_OUTCOMES.labels(platform, outcome.kind, outcome.reason or "none").inc()


@celery_app.task(
    name=queues.FAN_OUT.name,
    ignore_result=True,  # the push's state lives in the database, not in Redis
    soft_time_limit=600,  # a million devices: a thousand chunks stored
    time_limit=660,
    autoretry_for=(ConnectionFailure,),
    retry_backoff=True,
    max_retries=10,
)
def fan_out(push_id: str) -> dict[str, Any]:
    """Resolve the audience into chunks and queue one task per chunk not done yet."""
    chunks = fanout.plan_fan_out(mongo().db, push_id)
    for number in chunks:
        publish_chunk(push_id, number)
    return {"push_id": push_id, "chunks": len(chunks)}


@celery_app.task(
    name=queues.SEND_CHUNK.name,
    ignore_result=True,
    soft_time_limit=240,
    time_limit=300,
    autoretry_for=(ConnectionFailure,),
    retry_backoff=True,
    max_retries=10,
)
def send_chunk(push_id: str, number: int) -> dict[str, Any]:
    sender = delivery.Sender(
        providers=providers,
        pool=send_pool(),
        concurrency=settings().push_send_concurrency,
        group=min(delivery.GROUP, rate_limit().capacity()),
        rate_limit=_throttle,
        observe=_observe,
        # No hook unless OFFGRID_FAULT_INJECTION=1 (tests): production never checks Redis.
        crash_point=crash_point(redis_client()) or delivery.no_crash,
    )
    result = delivery.send_chunk(mongo().db, push_id, number, sender)
    if result.retry_in is not None:
        # A delayed redelivery of this chunk (RabbitMQ holds it), never a sleep in the worker;
        # native delayed delivery counts whole seconds.
        publish_chunk(push_id, number, countdown=max(1, math.ceil(result.retry_in)))
        return {"push_id": push_id, "chunk": number, "retry_in": result.retry_in}
    return {"push_id": push_id, "chunk": number, **result.counts}


@celery_app.task(name=queues.SEND_DUE_PUSHES.name, soft_time_limit=60, time_limit=90)
def send_due_pushes() -> dict[str, Any]:
    """Release scheduled pushes that are due (beat, every few seconds): no long ETA messages."""
    count = pushes.due_pushes(mongo().db, datetime.now(UTC), publish_fan_out)
    return {"job": "send_due_pushes", "count": count}


@celery_app.task(name=queues.PRUNE_UNSEEN_DEVICES.name, soft_time_limit=240, time_limit=300)
def prune_unseen_devices() -> dict[str, Any]:
    """Delete devices not seen for DEVICE_UNSEEN_DAYS (270 by default): an app install that
    has not registered in that long is gone, and its token only costs failed sends."""
    cutoff = datetime.now(UTC) - timedelta(days=settings().device_unseen_days)
    return exclusive("prune_unseen_devices", 300, lambda: devices.prune_unseen(mongo().db, cutoff))


@celery_app.task(name=queues.EXPIRE_PUSHES.name, soft_time_limit=240, time_limit=300)
def expire_pushes() -> dict[str, Any]:
    """Delete finished pushes older than PUSH_RETENTION with their chunks and receipts."""
    cutoff = datetime.now(UTC) - timedelta(seconds=settings().push_retention_seconds)
    return exclusive("expire_pushes", 300, lambda: pushes.expire_pushes(mongo().db, cutoff))
