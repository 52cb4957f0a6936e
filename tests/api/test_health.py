"""Liveness and readiness reflect the real services."""

from __future__ import annotations

import dataclasses
from typing import Any

from api import create_app
from config import Settings


def test_healthz_is_ok(client: Any) -> None:
    reply = client.get("/healthz")
    assert reply.status_code == 200
    assert reply.get_json() == {"status": "ok"}


def test_readyz_checks_every_service(client: Any) -> None:
    reply = client.get("/readyz")
    assert reply.status_code == 200
    assert reply.get_json() == {
        "status": "ready",
        "checks": {"mongodb": "ok", "rabbitmq": "ok", "redis": "ok"},
    }


def test_readyz_is_503_naming_the_service_that_is_down(settings: Settings) -> None:
    broken = dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0")
    reply = create_app(broken).test_client().get("/readyz")
    assert reply.status_code == 503
    assert reply.headers["Retry-After"]
    checks = reply.get_json()["checks"]
    assert checks["redis"].startswith("unavailable")
    assert checks["mongodb"] == "ok"
    assert checks["rabbitmq"] == "ok"
