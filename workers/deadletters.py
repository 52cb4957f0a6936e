"""The dead-letter queue: list, inspect and replay poison messages (SPEC §6).

Messages land in `offgrid.dead_letter` when RabbitMQ gives up on them: delivered more than
TASK_DELIVERY_LIMIT times (a task that kills its worker), or rejected by a worker (a body that
cannot be decoded, an unknown task name). RabbitMQ's `x-death` header says where each came from.
Replaying publishes a message back to its original queue, unchanged, then removes it here.
"""

from __future__ import annotations

from typing import Any

from kombu import Connection, Producer

from workers.factory import DEAD_LETTER_QUEUE, TASK_EXCHANGE


def _origin(headers: dict[str, Any]) -> dict[str, Any]:
    deaths = headers.get("x-death") or []
    first = deaths[0] if deaths else {}
    return {
        "queue": first.get("queue"),
        "reason": first.get("reason"),
        "count": first.get("count"),
        "routing_keys": list(first.get("routing-keys") or []),
    }


def _describe(message: Any) -> dict[str, Any]:
    headers = dict(message.headers or {})
    return {
        "delivery_tag": message.delivery_tag,
        "task": headers.get("task"),
        "id": headers.get("id"),
        "args": headers.get("argsrepr"),
        "content_type": message.content_type,
        "body_bytes": len(message.body or b""),
        "origin": _origin(headers),
    }


def list_dead_letters(broker_url: str, limit: int = 100) -> list[dict[str, Any]]:
    """Describe up to `limit` dead letters without removing them."""
    found = []
    with Connection(broker_url) as conn:
        queue = DEAD_LETTER_QUEUE.bind(conn.default_channel)
        queue.declare()
        held = []
        for _ in range(limit):
            message = queue.get(no_ack=False)
            if message is None:
                break
            held.append(message)
            found.append(_describe(message))
        for message in held:
            message.requeue()  # looking must not consume
    return found


def replay_dead_letters(broker_url: str, task_id: str | None = None, limit: int = 100) -> int:
    """Publish dead letters (all, or the one of `task_id`) back to their queues; return count."""
    replayed = 0
    with Connection(broker_url) as conn:
        channel = conn.default_channel
        queue = DEAD_LETTER_QUEUE.bind(channel)
        queue.declare()
        producer = Producer(channel, exchange=TASK_EXCHANGE)
        skipped = []
        for _ in range(limit):
            message = queue.get(no_ack=False)
            if message is None:
                break
            headers = dict(message.headers or {})
            origin = _origin(headers)
            if (task_id is not None and headers.get("id") != task_id) or not origin["queue"]:
                skipped.append(message)
                continue
            headers.pop("x-death", None)
            headers.pop("x-first-death-exchange", None)
            headers.pop("x-first-death-queue", None)
            headers.pop("x-first-death-reason", None)
            producer.publish(
                message.body,
                routing_key=origin["queue"],
                headers=headers,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                delivery_mode=2,
                retry=True,
            )
            message.ack()
            replayed += 1
        for message in skipped:
            message.requeue()
    return replayed
