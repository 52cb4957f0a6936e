"""Builds the one Celery app: RabbitMQ broker with confirms, quorum queues, Redis results.

Queues (SPEC §1): `sync` (apply batches), `push` (fan-out chunks), `maintenance` (beat jobs).
They are quorum queues: replicated and durable, with a delivery limit after which a message is
dead-lettered to `offgrid.dead_letter` instead of crashing workers forever. Messages are
persistent and publishes wait for the broker's confirm, so a published task is on disk.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import before_task_publish
from kombu import Exchange, Queue

from config import Settings, load_settings
from config.logs import request_id
from workers import queues
from workers.schedule import beat_schedule

TASK_EXCHANGE = Exchange("offgrid", type="topic", durable=True)
DEAD_LETTER_EXCHANGE = Exchange("offgrid.dlx", type="fanout", durable=True)
DEAD_LETTER_QUEUE = Queue(
    "offgrid.dead_letter",
    exchange=DEAD_LETTER_EXCHANGE,
    routing_key="#",
    durable=True,
    queue_arguments={"x-queue-type": "quorum"},
)


def task_queues(delivery_limit: int) -> list[Queue]:
    return [
        Queue(
            name,
            exchange=TASK_EXCHANGE,
            routing_key=name,
            durable=True,
            queue_arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": delivery_limit,
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
            },
        )
        for name in queues.QUEUE_NAMES
    ]


@before_task_publish.connect
def _carry_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Every task published while serving a request (API or task) carries its request id."""
    current = request_id.get()
    if headers is not None and current and "request_id" not in headers:
        headers["request_id"] = current


def worker_argv(python: str, name: str, *options: str) -> list[str]:
    """The command line of a worker consuming every Offgrid queue (tests and benchmarks)."""
    return [
        python, "-m", "celery", "-A", "workers.celery_app:celery_app", "worker",
        "-Q", ",".join(queues.QUEUE_NAMES), "-n", name, "--without-mingle", "--without-gossip",
        *options,
    ]  # fmt: skip


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.redis_url,
        "result_expires": settings.batch_result_ttl_seconds,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        # Durability: confirmed, persistent publishes into durable quorum queues.
        "broker_transport_options": {"confirm_publish": True},
        "task_default_delivery_mode": "persistent",
        "task_queues": task_queues(settings.task_delivery_limit),
        "task_default_queue": queues.SYNC,
        "task_default_exchange": TASK_EXCHANGE.name,
        "task_default_exchange_type": TASK_EXCHANGE.type,
        "task_default_routing_key": queues.SYNC,
        "task_create_missing_queues": False,
        "task_routes": queues.ROUTES,
        # A task is acknowledged after it ran; a worker that dies hands it back to the queue.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Each message is a whole batch or a whole chunk of notifications: hold one at a time
        # per process so a slow batch never strands others behind it in a busy worker's buffer.
        "worker_prefetch_multiplier": 1,
        "worker_detect_quorum_queues": True,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "beat_schedule": beat_schedule(settings),
    }


TASK_MODULES = ["tasks.sync", "tasks.maintenance", "tasks.push"]


def configure(app: Celery, settings: Settings, *, results: bool = True) -> None:
    """Give `app` Offgrid's configuration. `results=False` for a publisher that never reads
    task results (the API): Celery's Redis result backend subscribes to every published task's
    result, which would make publishing depend on Redis."""
    config = celery_config(settings)
    if not results:
        config["result_backend"] = None
    app.config_from_object(config)


def create_celery(settings: Settings | None = None, *, results: bool = True) -> Celery:
    """A configured Celery app (the API's publisher, tests); the worker's is
    `workers.celery_app.celery_app`, configured when first used."""
    app = Celery("offgrid", include=TASK_MODULES)
    configure(app, settings or load_settings(), results=results)
    return app
