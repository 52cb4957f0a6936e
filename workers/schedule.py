"""celery beat's schedule: one table, each job with its interval (each configurable from the
environment, see config/settings.py) and why it exists."""

from __future__ import annotations

from typing import Any

from config import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    maintenance = {"queue": "maintenance", "routing_key": "maintenance"}
    return {
        # A batch whose message was dead-lettered or lost would stay `queued` forever: publish
        # it again (applying is idempotent).
        "requeue-stuck-batches": {
            "task": "maintenance.requeue_stuck_batches",
            "schedule": float(settings.housekeeping_interval_seconds),
            "options": maintenance,
        },
        # Scheduled pushes are released when due; a long ETA message would be cut by
        # RabbitMQ's consumer timeout, so beat looks instead.
        "send-due-pushes": {
            "task": "maintenance.send_due_pushes",
            "schedule": float(settings.due_pushes_interval_seconds),
            "options": maintenance,
        },
        # Batch records serve status reads for a while, then only take space.
        "expire-batches": {
            "task": "maintenance.expire_batches",
            "schedule": float(settings.expiry_interval_seconds),
            "options": maintenance,
        },
        # A device unseen for DEVICE_UNSEEN_DAYS (270) is an uninstalled app: drop its token.
        "prune-unseen-devices": {
            "task": "maintenance.prune_unseen_devices",
            "schedule": float(settings.device_prune_interval_seconds),
            "options": maintenance,
        },
        # Finished pushes, their chunks and delivery receipts, after PUSH_RETENTION (7 days).
        "expire-pushes": {
            "task": "maintenance.expire_pushes",
            "schedule": float(settings.expiry_interval_seconds),
            "options": maintenance,
        },
        # Tombstones older than the horizon are no longer needed: such old checkpoints get 410.
        "purge-tombstones": {
            "task": "maintenance.purge_tombstones",
            "schedule": float(settings.tombstone_purge_interval_seconds),
            "options": maintenance,
        },
    }
