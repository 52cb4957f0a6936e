"""celery beat's schedule: one table, each job with its interval (each configurable from the
environment, see config/settings.py) and why it exists."""

from __future__ import annotations

from typing import Any

from config import Settings
from workers import queues


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        # A batch whose message was dead-lettered or lost would stay `queued` forever: publish
        # it again (applying is idempotent).
        "requeue-stuck-batches": {
            "task": queues.REQUEUE_STUCK_BATCHES.name,
            "schedule": float(settings.housekeeping_interval_seconds),
            "options": queues.REQUEUE_STUCK_BATCHES.route,
        },
        # Scheduled pushes are released when due; a long ETA message would be cut by
        # RabbitMQ's consumer timeout, so beat looks instead.
        "send-due-pushes": {
            "task": queues.SEND_DUE_PUSHES.name,
            "schedule": float(settings.due_pushes_interval_seconds),
            "options": queues.SEND_DUE_PUSHES.route,
        },
        # Batch records serve status reads for a while, then only take space.
        "expire-batches": {
            "task": queues.EXPIRE_BATCHES.name,
            "schedule": float(settings.expiry_interval_seconds),
            "options": queues.EXPIRE_BATCHES.route,
        },
        # A device unseen for DEVICE_UNSEEN_DAYS (270) is an uninstalled app: drop its token.
        "prune-unseen-devices": {
            "task": queues.PRUNE_UNSEEN_DEVICES.name,
            "schedule": float(settings.device_prune_interval_seconds),
            "options": queues.PRUNE_UNSEEN_DEVICES.route,
        },
        # Finished pushes, their chunks and delivery receipts, after PUSH_RETENTION (7 days).
        "expire-pushes": {
            "task": queues.EXPIRE_PUSHES.name,
            "schedule": float(settings.expiry_interval_seconds),
            "options": queues.EXPIRE_PUSHES.route,
        },
        # Tombstones older than the horizon are no longer needed: such old checkpoints get 410.
        "purge-tombstones": {
            "task": queues.PURGE_TOMBSTONES.name,
            "schedule": float(settings.tombstone_purge_interval_seconds),
            "options": queues.PURGE_TOMBSTONES.route,
        },
    }
