"""Publishing work from the API: confirmed by RabbitMQ, or undone and answered 503 (G7).
Task names and queues: `workers.queues`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kombu.exceptions import KombuError, OperationalError

from api.errors import APIError
from api.resources import resources

_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}


def publish_or_503(publish: Callable[..., None], *args: Any, undo: Callable[[], None]) -> None:
    """`publish(celery, *args)` (a `workers.queues.publish_*`) and wait for the broker's
    confirm; if it cannot be had, run `undo` (remove what the request stored) and answer 503
    with Retry-After."""
    try:
        publish(resources().celery, *args, retry=True, retry_policy=_RETRY)
    except (OperationalError, KombuError, OSError) as exc:
        undo()
        raise APIError(
            503,
            "broker_unavailable",
            "the queue cannot take work right now; retry later",
            headers={"Retry-After": "5"},
        ) from exc
