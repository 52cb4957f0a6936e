"""Helpers for push tests: register an app install, send a push through the API and wait
until the worker reports it done."""

from __future__ import annotations

import time
from typing import Any

from flask.testing import FlaskClient


def register(
    client: FlaskClient, make_token: Any, user: str, token: str, platform: str = "ios"
) -> str:
    """Register `token` as `user`'s device; return its device id."""
    reply = client.post(
        "/v1/devices",
        json={"platform": platform, "token": token},
        headers={"Authorization": f"Bearer {make_token(user)}"},
    )
    assert reply.status_code in (200, 201), reply.get_json()
    return reply.get_json()["device_id"]


def wait_done(
    client: FlaskClient, admin: dict[str, str], push_id: str, timeout: float = 40
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/v1/push/{push_id}", headers=admin).get_json()
        if status["status"] in ("done", "cancelled"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"push {push_id} not done: {status}")


def send_and_wait(
    client: FlaskClient, admin: dict[str, str], body: dict[str, Any], timeout: float = 40
) -> dict[str, Any]:
    """POST /v1/push with `body`; return its status once done."""
    reply = client.post("/v1/push", json=body, headers=admin)
    assert reply.status_code == 202, reply.get_json()
    return wait_done(client, admin, reply.get_json()["push_id"], timeout)
