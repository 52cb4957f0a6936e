"""Sync tasks on the `sync` queue."""

from __future__ import annotations

import logging
from typing import Any

from pymongo.errors import ConnectionFailure

from sync import batches
from workers.celery_app import celery_app, collections, mongo

log = logging.getLogger(__name__)


@celery_app.task(
    name="sync.apply_batch",
    soft_time_limit=240,
    time_limit=300,
    autoretry_for=(ConnectionFailure,),
    retry_backoff=True,
    max_retries=5,
)
def apply_batch(batch_id: str) -> dict[str, Any]:
    """Apply one stored batch; re-running it after a crash or redelivery has no further effect."""
    try:
        status = batches.apply_batch(mongo().db, batch_id, collections())
    except LookupError:
        # The API removed a batch whose publish it could not confirm; the client was told 503.
        log.warning("batch %s does not exist; nothing to apply", batch_id)
        return {"batch_id": batch_id, "status": "missing"}
    return {"batch_id": batch_id, "status": status["status"]}
