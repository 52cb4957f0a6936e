"""Start Flower behind basic auth, wired to RabbitMQ's management API for queue depths.

Flower without credentials would expose task arguments and worker control to anyone who can
reach it, so start-up fails unless FLOWER_BASIC_AUTH (`user:password`) is set.
"""

from __future__ import annotations

import os
import sys

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


def main() -> None:
    sys.argv = flower_argv(dict(os.environ))
    celery_main()


if __name__ == "__main__":
    main()
