"""Device registry (SPEC §4): upsert by token, moves between users, topics, ownership."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pymongo.database import Database

from push.devices import DEVICES

IOS_TOKEN = "a1" * 32
WEB_TOKEN = json.dumps(
    {"endpoint": "https://push.example.com/send/abc", "keys": {"p256dh": "BPk", "auth": "q1"}}
)


@pytest.fixture
def as_user(make_token: Any) -> Any:
    return lambda user: {"Authorization": f"Bearer {make_token(user)}"}


def _register(client: Any, headers: dict[str, str], **body: Any) -> Any:
    return client.post(
        "/v1/devices", json={"platform": "ios", "token": IOS_TOKEN, **body}, headers=headers
    )


def test_register_then_reregister_the_same_token(
    client: Any, as_user: Any, db: Database, user: str
) -> None:
    token = "b2" * 32
    first = _register(client, as_user(user), token=token, topics=["news"], locale="en-GB")
    assert first.status_code == 201
    device_id = first.get_json()["device_id"]
    again = _register(client, as_user(user), token=token, timezone="Europe/Paris")
    assert again.status_code == 200
    assert again.get_json() == {"device_id": device_id}
    doc = db[DEVICES].find_one({"_id": device_id})
    assert doc["user"] == user
    assert doc["topics"] == ["news"]  # re-registering without topics keeps them
    assert doc["timezone"] == "Europe/Paris"
    assert db[DEVICES].count_documents({"token": token}) == 1


def test_a_token_registered_by_another_user_moves_to_them(
    client: Any, as_user: Any, db: Database
) -> None:
    token = "c3" * 32
    device_id = _register(client, as_user("old-owner"), token=token, topics=["secret"]).get_json()[
        "device_id"
    ]
    moved = _register(client, as_user("new-owner"), token=token)
    assert moved.status_code == 200
    assert moved.get_json()["device_id"] == device_id
    doc = db[DEVICES].find_one({"_id": device_id})
    assert (doc["user"], doc["topics"]) == ("new-owner", [])
    # The old owner can no longer manage it.
    assert (
        client.delete(f"/v1/devices/{device_id}", headers=as_user("old-owner")).status_code == 404
    )


def test_topics_and_unregister(client: Any, as_user: Any, user: str, db: Database) -> None:
    device_id = _register(client, as_user(user), token="d4" * 32).get_json()["device_id"]
    reply = client.put(f"/v1/devices/{device_id}/topics/sports", headers=as_user(user))
    assert reply.get_json() == {"device_id": device_id, "topics": ["sports"]}
    client.put(f"/v1/devices/{device_id}/topics/weather", headers=as_user(user))
    reply = client.delete(f"/v1/devices/{device_id}/topics/sports", headers=as_user(user))
    assert reply.get_json()["topics"] == ["weather"]
    assert (
        client.put(f"/v1/devices/{device_id}/topics/x", headers=as_user("mallory")).status_code
        == 404
    )
    assert client.delete(f"/v1/devices/{device_id}", headers=as_user(user)).status_code == 204
    assert db[DEVICES].count_documents({"_id": device_id}) == 0
    assert client.delete(f"/v1/devices/{device_id}", headers=as_user(user)).status_code == 404


def test_web_push_subscriptions_are_accepted(client: Any, as_user: Any, user: str) -> None:
    assert _register(client, as_user(user), platform="web", token=WEB_TOKEN).status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"platform": "blackberry"}, "platform"),
        ({"token": ""}, "token"),
        ({"token": "line\nbreak"}, "token"),
        ({"token": {"$gt": ""}}, "token"),
        ({"topics": ["has space"]}, "topics"),
        ({"topics": [{"$ne": 1}]}, "topics"),
        ({"client_id": "x"}, "client_id"),
    ],
)
def test_bad_registrations_are_400_and_store_nothing(
    client: Any, as_user: Any, db: Database, body: dict[str, Any], field: str
) -> None:
    before = db[DEVICES].count_documents({})
    reply = _register(client, as_user("validator"), **body)
    assert reply.status_code == 400
    assert field in reply.get_json()["error"]["details"]
    assert db[DEVICES].count_documents({}) == before


def test_devices_need_a_user(client: Any) -> None:
    assert (
        client.post("/v1/devices", json={"platform": "ios", "token": IOS_TOKEN}).status_code == 401
    )


def test_invalid_topic_in_the_path_is_400(client: Any, as_user: Any, user: str) -> None:
    device_id = _register(client, as_user(user), token="e5" * 32).get_json()["device_id"]
    reply = client.put(f"/v1/devices/{device_id}/topics/{'x' * 200}", headers=as_user(user))
    assert reply.status_code == 400
    assert reply.get_json()["error"]["code"] == "invalid_topic"


@pytest.mark.usefixtures("worker")
def test_an_install_that_syncs_keeps_its_device_from_being_pruned(
    client: Any, sync_client: Any, db: Database, run_maintenance: Any, settings: Any
) -> None:
    """`last_seen` moved only on re-registration, so the 270-day prune dropped devices of apps
    that sync daily. Now a push or pull by the install refreshes it, at most once an hour."""
    from datetime import UTC, datetime, timedelta

    c = sync_client
    token = f"{uuid.uuid4().hex}{uuid.uuid4().hex}"
    reply = _register(client, c.headers, token=token, client_id=c.client_id)
    device_id = reply.get_json()["device_id"]
    long_ago = datetime.now(UTC) - timedelta(days=settings.device_unseen_days + 10)
    db[DEVICES].update_one({"_id": device_id}, {"$set": {"last_seen": long_ago}})
    assert c.pull().status_code == 200  # the app syncs
    seen = db[DEVICES].find_one({"_id": device_id})["last_seen"]
    assert datetime.now(UTC) - seen < timedelta(minutes=1)
    run_maintenance("maintenance.prune_unseen_devices")
    assert db[DEVICES].count_documents({"_id": device_id}) == 1
    # Within the hour, requests do not write it again.
    db[DEVICES].update_one({"_id": device_id}, {"$set": {"last_seen": long_ago}})
    assert c.push([c.put("k", {"v": 1})], wait=20).status_code == 200
    assert c.pull().status_code == 200
    still = db[DEVICES].find_one({"_id": device_id})["last_seen"]
    assert abs(still - long_ago) < timedelta(seconds=1)  # stored to the millisecond
