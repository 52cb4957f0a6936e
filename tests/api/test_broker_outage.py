"""G7: a 202 means durably queued; when the broker cannot take work the answer is 503."""

from __future__ import annotations

import dataclasses
from typing import Any

from pymongo.database import Database

from api import create_app
from config import Settings
from sync.batches import BATCHES
from tests.sync_client import SyncTestClient


def test_broker_down_answers_503_with_retry_after_and_keeps_nothing(
    settings: Settings, make_token: Any, user: str, client_id: str, db: Database
) -> None:
    down = dataclasses.replace(settings, broker_url="amqp://guest:guest@127.0.0.1:1//")
    client = SyncTestClient(create_app(down).test_client(), make_token(user), client_id, user)
    reply = client.push([client.put("k", {"v": 1})])
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "5"
    assert reply.get_json()["error"]["code"] == "broker_unavailable"
    assert db[BATCHES].count_documents({"client_id": client_id}) == 0


def test_push_with_broker_down_is_503_and_keeps_nothing(
    settings: Settings, admin: dict[str, str], db: Database
) -> None:
    from push.pushes import PUSHES, push_id_for

    down = dataclasses.replace(settings, broker_url="amqp://guest:guest@127.0.0.1:1//")
    key = "outage-" + "x" * 20
    body = {
        "audience": {"users": ["nobody"]},
        "notification": {"title": "t", "body": "b"},
        "idempotency_key": key,
    }
    reply = create_app(down).test_client().post("/v1/push", json=body, headers=admin)
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "5"
    expected = push_id_for("bootstrap", key)
    assert db[PUSHES].count_documents({"_id": expected}) == 0
    # The broker is back: the same request with the same key works.
    again = create_app(settings).test_client().post("/v1/push", json=body, headers=admin)
    assert again.status_code == 202
    assert again.get_json()["push_id"] == expected
    assert db[PUSHES].find_one({"_id": again.get_json()["push_id"]})["status"] in (
        "queued",
        "sending",
        "done",
    )
