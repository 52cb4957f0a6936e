"""Device registry (SPEC §4): upsert by token, moves between users, topics, ownership."""

from __future__ import annotations

import json
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
