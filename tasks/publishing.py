"""Publishing the engine's own tasks from worker code (names and queues: `workers.queues`).

No publish subscribes to its result (`ignore_result`): with a Redis result backend a publish
would otherwise subscribe in Redis first, so a Redis outage would fail it (and can leave the
process's result consumer broken until restart), and every publish would leave a subscription.
"""

from __future__ import annotations

from workers import queues
from workers.celery_app import celery_app


def publish_apply(batch_id: str) -> None:
    queues.publish_apply(celery_app, batch_id, ignore_result=True)


def publish_fan_out(push_id: str) -> None:
    queues.publish_fan_out(celery_app, push_id, ignore_result=True)


def publish_chunk(push_id: str, number: int, countdown: int | None = None) -> None:
    queues.publish_chunk(celery_app, push_id, number, countdown=countdown, ignore_result=True)
