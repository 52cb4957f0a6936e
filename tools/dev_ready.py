"""Readiness probes for `./dev`: a service is ready when it answers its own protocol, not when
its port accepts a connection (RabbitMQ listens before it can open a channel, a database
process before it serves a query).

    python tools/dev_ready.py rabbitmq AMQP_URL MANAGEMENT_URL SECONDS
    python tools/dev_ready.py redis REDIS_URL SECONDS
    python tools/dev_ready.py mongo MONGODB_URL SECONDS

Exits 0 once the service answers, 1 with the last error after SECONDS.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def _rabbitmq(amqp_url: str, management_url: str) -> Callable[[], None]:
    from urllib.parse import urlsplit

    import amqp
    import httpx

    def probe() -> None:
        parts = urlsplit(amqp_url)
        vhost = parts.path[1:] or "/"
        with amqp.Connection(
            f"{parts.hostname}:{parts.port or 5672}",
            userid=parts.username or "guest",
            password=parts.password or "guest",
            virtual_host=vhost,
            connect_timeout=2,
        ) as connection:
            connection.channel().close()
        mgmt = urlsplit(management_url)
        base = f"{mgmt.scheme}://{mgmt.hostname}:{mgmt.port}"
        auth = (mgmt.username or "guest", mgmt.password or "guest")
        httpx.get(f"{base}/api/overview", auth=auth, timeout=2).raise_for_status()

    return probe


def _redis(url: str) -> Callable[[], None]:
    from redis import Redis

    def probe() -> None:
        client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()

    return probe


def _mongo(url: str) -> Callable[[], None]:
    from pymongo import MongoClient

    def probe() -> None:
        client: MongoClient = MongoClient(url, serverSelectionTimeoutMS=2000)
        try:
            client.admin.command("ping")
        finally:
            client.close()

    return probe


def main(argv: list[str]) -> int:
    kind, *urls, seconds = argv
    probes = {"rabbitmq": _rabbitmq, "redis": _redis, "mongo": _mongo}
    probe = probes[kind](*urls)
    deadline = time.monotonic() + float(seconds)
    while True:
        try:
            probe()
            return 0
        except Exception as exc:  # any failure means "not ready yet" until the deadline
            if time.monotonic() > deadline:
                print(f"{kind} not ready: {exc!r}", file=sys.stderr)
                return 1
            time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
