"""Web Push end to end: a real worker sends to the local Web Push service over TLS with VAPID
and an aes128gcm-encrypted body; provider answers map to outcomes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pymongo.database import Database

from push.devices import DEVICES
from tests.push_client import register, send_and_wait

pytestmark = pytest.mark.usefixtures("worker")


def _web_device(client: Any, make_token: Any, user: str, subscription: str) -> str:
    return register(client, make_token, user, subscription, "web")


def _send(client: Any, admin: dict[str, str], user: str, ttl: int = 600) -> dict[str, Any]:
    body = {
        "audience": {"users": [user]},
        "notification": {"title": "Build green", "body": "main passed"},
        "data": {"build": "42"},
        "options": {"ttl": ttl, "collapse_key": "builds"},
    }
    return send_and_wait(client, admin, body)


def test_a_web_push_is_delivered_encrypted_and_signed(
    client: Any, admin: dict[str, str], make_token: Any, webpush_fake: Any
) -> None:
    user = f"w-{uuid.uuid4().hex[:8]}"
    subscription = webpush_fake.subscribe()
    _web_device(client, make_token, user, subscription)
    status = _send(client, admin, user)
    assert status["counts"] == {"targeted": 1, "sent": 1, "failed": 0, "invalid": 0, "pending": 0}
    received = webpush_fake.received[webpush_fake.sub_id(subscription)]
    assert received == [
        {
            "push_id": status["push_id"],
            "notification": {"title": "Build green", "body": "main passed"},
            "data": {"build": "42"},
        }
    ]
    assert webpush_fake.errors == []


@pytest.mark.parametrize("code", [404, 410])
def test_a_gone_subscription_is_pruned(
    code: int, client: Any, admin: dict[str, str], make_token: Any, webpush_fake: Any, db: Database
) -> None:
    user = f"w-{uuid.uuid4().hex[:8]}"
    subscription = webpush_fake.subscribe()
    device_id = _web_device(client, make_token, user, subscription)
    webpush_fake.script[webpush_fake.sub_id(subscription)] = code
    status = _send(client, admin, user)
    assert status["counts"]["invalid"] == 1
    assert db[DEVICES].count_documents({"_id": device_id}) == 0


def test_a_throttled_send_is_retried_later_and_delivered_once(
    client: Any, admin: dict[str, str], make_token: Any, webpush_fake: Any
) -> None:
    user = f"w-{uuid.uuid4().hex[:8]}"
    subscription = webpush_fake.subscribe()
    _web_device(client, make_token, user, subscription)
    webpush_fake.retry_after = 1
    webpush_fake.script[webpush_fake.sub_id(subscription)] = [429, 503]  # then it accepts
    status = _send(client, admin, user)
    assert status["counts"]["sent"] == 1
    assert len(webpush_fake.received[webpush_fake.sub_id(subscription)]) == 1


def test_a_send_throttled_past_its_ttl_fails_and_keeps_the_device(
    client: Any, admin: dict[str, str], make_token: Any, webpush_fake: Any, db: Database
) -> None:
    user = f"w-{uuid.uuid4().hex[:8]}"
    subscription = webpush_fake.subscribe()
    device_id = _web_device(client, make_token, user, subscription)
    webpush_fake.retry_after = 30
    webpush_fake.script[webpush_fake.sub_id(subscription)] = 429
    status = _send(client, admin, user, ttl=5)
    assert (status["counts"]["sent"], status["counts"]["failed"]) == (0, 1)
    assert (
        db[DEVICES].count_documents({"_id": device_id}) == 1
    )  # a busy service is not a dead token
    assert webpush_fake.sub_id(subscription) not in webpush_fake.received


def test_a_worker_killed_mid_chunk_never_sends_a_device_twice(
    client: Any, admin: dict[str, str], make_token: Any, webpush_fake: Any, redis_client: Any
) -> None:
    from sync.faults import CRASH_KEY

    user = f"w-{uuid.uuid4().hex[:8]}"
    subscriptions = [webpush_fake.subscribe() for _ in range(30)]
    for subscription in subscriptions:
        _web_device(client, make_token, user, subscription)
    redis_client.set(CRASH_KEY, "push_after_send")  # die right after the first send
    status = _send(client, admin, user)
    assert redis_client.get(CRASH_KEY) is None, "the armed crash never happened"
    received = [len(webpush_fake.received.get(webpush_fake.sub_id(s), [])) for s in subscriptions]
    assert max(received) == 1  # the redelivered chunk sent to no device a second time
    # Only the sends in flight when it died (at most PUSH_SEND_CONCURRENCY, 8) can be lost.
    assert sum(received) >= 30 - 8
    counts = status["counts"]
    assert (counts["targeted"], counts["pending"]) == (30, 0)
    assert counts["sent"] + counts["failed"] == 30
    # Sends in flight when the worker died are not known to have arrived: they count as
    # failed, never as sent, and are not sent again.
    assert counts["failed"] >= 1
    assert counts["sent"] <= sum(received)


def test_a_web_token_that_is_not_a_subscription_is_pruned_at_first_send(
    client: Any, admin: dict[str, str], make_token: Any, db: Database
) -> None:
    user = f"w-{uuid.uuid4().hex[:8]}"
    device_id = _web_device(client, make_token, user, "not-a-push-subscription")
    status = _send(client, admin, user)
    assert status["counts"]["invalid"] == 1
    assert db[DEVICES].count_documents({"_id": device_id}) == 0
