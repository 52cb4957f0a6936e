"""Task names and queues, and the typed functions that publish the engine's tasks: the one place
each of them is written. The API, the tasks, the worker's routes, beat and the metrics all
take them from here, so a renamed task or a moved queue is one change.

Each queue's tasks share its prefix (`sync.*`, `push.*`, `maintenance.*`), which is how the
worker routes them (`ROUTES`). Every publish names its queue and routing key explicitly too,
so a message never depends on the publisher's routing table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery

SYNC, PUSH, MAINTENANCE = "sync", "push", "maintenance"
QUEUE_NAMES = (SYNC, PUSH, MAINTENANCE)


@dataclass(frozen=True)
class TaskName:
    name: str
    queue: str

    @property
    def route(self) -> dict[str, str]:
        return {"queue": self.queue, "routing_key": self.queue}


APPLY_BATCH = TaskName("sync.apply_batch", SYNC)
FAN_OUT = TaskName("push.fan_out", PUSH)
SEND_CHUNK = TaskName("push.send_chunk", PUSH)
REQUEUE_STUCK_BATCHES = TaskName("maintenance.requeue_stuck_batches", MAINTENANCE)
EXPIRE_BATCHES = TaskName("maintenance.expire_batches", MAINTENANCE)
PURGE_TOMBSTONES = TaskName("maintenance.purge_tombstones", MAINTENANCE)
SEND_DUE_PUSHES = TaskName("maintenance.send_due_pushes", MAINTENANCE)
PRUNE_UNSEEN_DEVICES = TaskName("maintenance.prune_unseen_devices", MAINTENANCE)
EXPIRE_PUSHES = TaskName("maintenance.expire_pushes", MAINTENANCE)

TASKS = (
    APPLY_BATCH,
    FAN_OUT,
    SEND_CHUNK,
    REQUEUE_STUCK_BATCHES,
    EXPIRE_BATCHES,
    PURGE_TOMBSTONES,
    SEND_DUE_PUSHES,
    PRUNE_UNSEEN_DEVICES,
    EXPIRE_PUSHES,
)
ROUTES = {f"{queue}.*": {"queue": queue, "routing_key": queue} for queue in QUEUE_NAMES}


def _send(celery: Celery, task: TaskName, args: list[Any], **options: Any) -> None:
    celery.send_task(task.name, args=args, **task.route, **options)


def publish_apply(celery: Celery, batch_id: str, **options: Any) -> None:
    """A message on `sync` for the stored batch (its id is the task id)."""
    _send(celery, APPLY_BATCH, [batch_id], task_id=batch_id, **options)


def publish_fan_out(celery: Celery, push_id: str, **options: Any) -> None:
    """A message on `push` to plan the push's chunks."""
    _send(celery, FAN_OUT, [push_id], **options)


def publish_chunk(celery: Celery, push_id: str, number: int, **options: Any) -> None:
    """A message on `push` for one chunk (`countdown=`, whole seconds, delays it in RabbitMQ)."""
    _send(celery, SEND_CHUNK, [push_id, number], **options)
