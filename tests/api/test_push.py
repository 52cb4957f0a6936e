"""Push API (SPEC §4): accept, fan out, count, idempotency, cancel, scheduling, audiences.

No provider credentials are configured in the suite, so every send ends `failed` with a
configuration error: the point here is the push lifecycle, which must end and count right.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.database import Database

from push.pushes import DELIVERIES
from tests.push_client import wait_done

pytestmark = pytest.mark.usefixtures("worker")


def _device(client: Any, make_token: Any, user: str, topics: list[str] | None = None) -> str:
    reply = client.post(
        "/v1/devices",
        json={"platform": "android", "token": uuid.uuid4().hex * 3, "topics": topics or []},
        headers={"Authorization": f"Bearer {make_token(user)}"},
    )
    assert reply.status_code == 201
    return reply.get_json()["device_id"]


def _push(client: Any, admin: dict[str, str], **body: Any) -> Any:
    body.setdefault("notification", {"title": "Hi", "body": "there"})
    return client.post("/v1/push", json=body, headers=admin)


def test_a_push_to_users_ends_done_with_every_device_counted(
    client: Any, admin: dict[str, str], make_token: Any, db: Database
) -> None:
    users = [f"p-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    devices = [_device(client, make_token, users[0]), _device(client, make_token, users[0])]
    devices.append(_device(client, make_token, users[1]))
    reply = _push(client, admin, audience={"users": users})
    assert reply.status_code == 202
    status = wait_done(client, admin, reply.get_json()["push_id"])
    assert status["counts"] == {"targeted": 3, "sent": 3, "failed": 0, "invalid": 0, "pending": 0}
    receipts = {
        d["device_id"]: d["status"] for d in db[DELIVERIES].find({"push_id": status["push_id"]})
    }
    assert receipts == dict.fromkeys(devices, "sent")


def test_the_same_idempotency_key_returns_the_same_push(
    client: Any, admin: dict[str, str], make_token: Any, db: Database
) -> None:
    user = f"p-{uuid.uuid4().hex[:8]}"
    _device(client, make_token, user)
    key = uuid.uuid4().hex
    first = _push(client, admin, audience={"users": [user]}, idempotency_key=key).get_json()
    again = _push(client, admin, audience={"users": [user]}, idempotency_key=key).get_json()
    assert first == again
    wait_done(client, admin, first["push_id"])
    assert db[DELIVERIES].count_documents({"push_id": first["push_id"]}) == 1


def test_topic_and_scope_audiences(client: Any, admin: dict[str, str], make_token: Any) -> None:
    topic = f"t{uuid.uuid4().hex[:8]}"
    _device(client, make_token, f"p-{uuid.uuid4().hex[:8]}", [topic])
    _device(client, make_token, f"p-{uuid.uuid4().hex[:8]}", [topic, "other"])
    _device(client, make_token, f"p-{uuid.uuid4().hex[:8]}", ["other"])
    by_topic = _push(client, admin, audience={"topic": topic}).get_json()["push_id"]
    assert wait_done(client, admin, by_topic)["counts"]["targeted"] == 2

    scope = f"team:{uuid.uuid4().hex[:8]}"
    member = f"p-{uuid.uuid4().hex[:8]}"
    client.put(f"/v1/admin/scopes/{scope}/members/{member}", json={"role": "reader"}, headers=admin)
    _device(client, make_token, member)
    by_scope = _push(client, admin, audience={"scope": scope}, data={"k": "v"}).get_json()[
        "push_id"
    ]
    assert wait_done(client, admin, by_scope)["counts"]["targeted"] == 1


def test_a_personal_scope_audience_reaches_its_user_even_an_auth0_one(
    client: Any, admin: dict[str, str], make_token: Any
) -> None:
    """`user:<sub>` is a scope like any other (SPEC §1): its one member is its user, whose
    `sub` may hold `|` (Auth0's `auth0|…`)."""
    user = f"auth0|{uuid.uuid4().hex[:12]}"
    _device(client, make_token, user)
    _device(client, make_token, user)
    _device(client, make_token, f"p-{uuid.uuid4().hex[:8]}")
    reply = _push(client, admin, audience={"scope": f"user:{user}"})
    assert reply.status_code == 202, reply.get_json()
    assert wait_done(client, admin, reply.get_json()["push_id"])["counts"]["targeted"] == 2


def test_a_scheduled_push_can_be_cancelled_and_sends_nothing(
    client: Any, admin: dict[str, str], make_token: Any, db: Database
) -> None:
    user = f"p-{uuid.uuid4().hex[:8]}"
    _device(client, make_token, user)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    push_id = _push(
        client, admin, audience={"users": [user]}, options={"send_at": later}
    ).get_json()["push_id"]
    assert client.get(f"/v1/push/{push_id}", headers=admin).get_json()["status"] == "scheduled"
    cancelled = client.delete(f"/v1/push/{push_id}", headers=admin)
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "cancelled"
    assert client.delete(f"/v1/push/{push_id}", headers=admin).status_code == 409
    assert db[DELIVERIES].count_documents({"push_id": push_id}) == 0


def test_a_due_scheduled_push_is_released_by_beat_job(
    client: Any, admin: dict[str, str], make_token: Any, run_maintenance: Any
) -> None:
    user = f"p-{uuid.uuid4().hex[:8]}"
    _device(client, make_token, user)
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    push_id = _push(
        client, admin, audience={"users": [user]}, options={"send_at": soon}
    ).get_json()["push_id"]
    time.sleep(1.2)
    assert run_maintenance("maintenance.send_due_pushes")["count"] >= 1
    assert wait_done(client, admin, push_id)["counts"]["targeted"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"audience": {}},
        {"audience": {"users": ["a"], "topic": "t"}},
        {"audience": {"topic": "has space"}},
        {"audience": {"users": [{"$gt": ""}]}},
        {"audience": {"users": ["a"]}, "notification": None, "data": None},
        {"audience": {"users": ["a"]}, "data": {"$where": "1"}},
        {"audience": {"users": ["a"]}, "data": {"blob": "x" * 5000}},
        {
            "audience": {"users": ["a"]},
            "data": {
                "deep": {
                    "a": {
                        "b": {
                            "c": {
                                "d": {
                                    "e": {
                                        "f": {
                                            "g": {
                                                "h": {
                                                    "i": {
                                                        "j": {
                                                            "k": {
                                                                "l": {"m": {"n": {"o": {"p": 1}}}}
                                                            }
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        },
        {"audience": {"users": ["a"]}, "options": {"priority": "urgent"}},
    ],
)
def test_bad_push_requests_are_400(
    client: Any, admin: dict[str, str], body: dict[str, Any]
) -> None:
    reply = client.post(
        "/v1/push", json={"notification": {"title": "x", "body": "y"}, **body}, headers=admin
    )
    assert reply.status_code == 400


def test_push_needs_a_push_send_key(client: Any, app: Any) -> None:
    body = {"audience": {"users": ["a"]}, "notification": {"title": "x", "body": "y"}}
    assert client.post("/v1/push", json=body).status_code == 401
    created = app.test_cli_runner().invoke(args=["keys", "create", "ro", "--scope", "admin"])
    admin_only = created.stdout.strip().splitlines()[0]
    assert client.post("/v1/push", json=body, headers={"X-API-Key": admin_only}).status_code == 403
    # An admin key may read and cancel any push (none here), but not send one.
    assert client.get("/v1/push/unknown", headers={"X-API-Key": admin_only}).status_code == 404
