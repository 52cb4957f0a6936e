"""Poison messages end in the dead-letter queue; the CLI lists and replays them."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask import Flask
from pymongo.database import Database

from config import Settings
from workers.factory import DEAD_LETTER_EXCHANGE, create_celery

pytestmark = pytest.mark.usefixtures("worker")


def _listed(app: Flask) -> list[dict[str, Any]]:
    result = app.test_cli_runner().invoke(args=["dead-letters", "list"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _wait_listed(app: Flask, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for entry in _listed(app):
            if entry["id"] == task_id:
                return entry
        time.sleep(0.3)
    raise AssertionError(f"{task_id} never reached the dead-letter queue")


def test_an_unknown_task_is_dead_lettered_and_listed(app: Flask, settings: Settings) -> None:
    sent = create_celery(settings).send_task(
        "sync.no_such_task", args=["x"], queue="sync", routing_key="sync"
    )
    entry = _wait_listed(app, sent.id)
    assert entry["task"] == "sync.no_such_task"
    assert entry["origin"]["queue"] == "sync"
    assert entry["origin"]["reason"] == "rejected"
    assert _wait_listed(app, sent.id)  # listing did not consume it


def test_replay_sends_a_dead_letter_back_and_it_is_applied(
    app: Flask, settings: Settings, db: Database, sync_client: Any
) -> None:
    # A batch whose message RabbitMQ dead-lettered (say, after the delivery limit while a bug
    # crashed every worker); the fix is deployed, now replay it.
    batch_id = sync_client.store_unpublished(db, [sync_client.put("replayed", {"v": 1})])
    create_celery(settings).send_task(
        "sync.apply_batch",
        args=[batch_id],
        task_id=batch_id,
        exchange=DEAD_LETTER_EXCHANGE.name,
        routing_key="sync",
        headers={
            "x-death": [
                {"queue": "sync", "reason": "delivery_limit", "count": 10, "routing-keys": ["sync"]}
            ]
        },
    )
    assert _wait_listed(app, batch_id)["origin"]["reason"] == "delivery_limit"
    assert sync_client.status(batch_id).get_json()["status"] == "queued"

    result = app.test_cli_runner().invoke(args=["dead-letters", "replay", "--task-id", batch_id])
    assert result.exit_code == 0
    assert "replayed 1" in result.output
    assert sync_client.wait_final(batch_id)["status"] == "applied"
    assert all(entry["id"] != batch_id for entry in _listed(app))
