"""Start Flower behind basic auth, wired to RabbitMQ's management API for queue depths.

Flower without credentials would expose task arguments and worker control to anyone who can
reach it, so start-up fails unless FLOWER_BASIC_AUTH (`user:password`) is set.

Two fixes to Flower 2.2's Broker tab (flower is pinned; re-check them when upgrading):
- for the default vhost `/` it asks the management API for `queues//`, which `urljoin`
  shortens to `queues/`: every vhost's queues, in a table without a vhost column. We ask for
  `queues/%2F`, this vhost only.
- it lists only the queues workers consume, and nothing consumes the dead-letter queue, whose
  depth is the one ops most need to see. We add it.
"""

from __future__ import annotations

import os
import sys
from typing import Any
from urllib.parse import quote, unquote

from celery.bin.celery import main as celery_main


def flower_argv(env: dict[str, str]) -> list[str]:
    auth = env.get("FLOWER_BASIC_AUTH", "").strip()
    user, _, password = auth.partition(":")
    if not user or not password:
        raise SystemExit(
            "FLOWER_BASIC_AUTH is required (user:password); Flower will not start open"
        )
    argv = [
        "celery",
        "-A",
        "workers.celery_app:celery_app",
        "flower",
        f"--address={env.get('FLOWER_ADDRESS', '127.0.0.1')}",
        f"--port={env.get('FLOWER_PORT', '5555')}",
        f"--basic-auth={auth}",
    ]
    management = env.get("RABBITMQ_MANAGEMENT_URL", "").strip()
    if management:
        argv.append(f"--broker-api={management.rstrip('/')}/api/")
    return argv


def patch_broker_view() -> None:
    from flower.utils import broker
    from flower.views import BaseHandler

    from workers.factory import DEAD_LETTER_QUEUE

    class OwnVhostRabbitMQ(broker.RabbitMQ):
        def __init__(self, broker_url: str, http_api: str, **kwargs: Any) -> None:
            super().__init__(broker_url, http_api, **kwargs)
            self.vhost = quote(unquote(self.vhost), safe="")

    consumed = BaseHandler.get_active_queue_names

    def with_dead_letters(handler: Any) -> list[str]:
        return sorted({*consumed(handler), DEAD_LETTER_QUEUE.name})

    broker.RabbitMQ = OwnVhostRabbitMQ  # type: ignore[misc]
    BaseHandler.get_active_queue_names = with_dead_letters  # type: ignore[method-assign]


def main() -> None:
    sys.argv = flower_argv(dict(os.environ))
    patch_broker_view()
    celery_main()


if __name__ == "__main__":
    main()
