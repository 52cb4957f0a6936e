"""Publishing the engine's own tasks from worker code: one place for each task's name and queue.

No publish subscribes to its result (`ignore_result`): with a Redis result backend a publish
would otherwise subscribe in Redis first, so a Redis outage would fail it (and can leave the
process's result consumer broken until restart), and every publish would leave a subscription.
"""

from __future__ import annotations

from workers.celery_app import celery_app


def publish_apply(batch_id: str) -> None:
    """A message on `sync` for the stored batch (its id is the task id)."""
    celery_app.send_task(
        "sync.apply_batch", args=[batch_id], queue="sync", routing_key="sync", task_id=batch_id,
        ignore_result=True,
    )  # fmt: skip


def publish_fan_out(push_id: str) -> None:
    celery_app.send_task(
        "push.fan_out", args=[push_id], queue="push", routing_key="push", ignore_result=True
    )


def publish_chunk(push_id: str, number: int, countdown: int | None = None) -> None:
    """A message on `push` for one chunk; `countdown` (whole seconds) delays it in RabbitMQ."""
    celery_app.send_task(
        "push.send_chunk", args=[push_id, number], queue="push", routing_key="push",
        countdown=countdown, ignore_result=True,
    )  # fmt: skip
