"""Push hygiene: devices unseen for 270 days are pruned, finished pushes and their receipts
expire, and a provider's send rate is shared by all workers — as beat and workers run them."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.database import Database

from config import Settings
from push import delivery, fanout, pushes
from push.devices import DEVICES
from push.providers import providers_from_settings
from push.ratelimit import ProviderRateLimit
from tests.push_client import register, send_and_wait


def _register(client: Any, make_token: Any, user: str) -> str:
    return register(client, make_token, user, secrets.token_hex(32))


def _planned_push(client: Any, make_token: Any, db: Database, count: int) -> tuple[str, list[str]]:
    """A push to `count` new iOS devices of a new user, fanned out into one chunk; its id and
    the devices' tokens."""
    user = f"h-{uuid.uuid4().hex[:8]}"
    devices = [_register(client, make_token, user) for _ in range(count)]
    tokens = [db[DEVICES].find_one({"_id": d})["token"] for d in devices]
    push_id, _, _ = pushes.create_push(
        db, "test", {"audience": {"users": [user]}, "notification": {"title": "t", "body": "b"}}
    )
    fanout.plan_fan_out(db, push_id)
    return push_id, tokens


@pytest.mark.usefixtures("worker")
def test_devices_unseen_for_270_days_are_pruned_and_others_kept(
    client: Any, make_token: Any, settings: Settings, db: Database, run_maintenance: Any
) -> None:
    user = f"h-{uuid.uuid4().hex[:8]}"
    old, recent = _register(client, make_token, user), _register(client, make_token, user)
    now = datetime.now(UTC)
    db[DEVICES].update_one({"_id": old}, {"$set": {"last_seen": now - timedelta(days=271)}})
    db[DEVICES].update_one({"_id": recent}, {"$set": {"last_seen": now - timedelta(days=269)}})
    assert run_maintenance("maintenance.prune_unseen_devices")["count"] >= 1
    assert db[DEVICES].count_documents({"_id": old}) == 0
    assert db[DEVICES].count_documents({"_id": recent}) == 1


@pytest.mark.usefixtures("worker")
def test_finished_pushes_expire_with_their_receipts_and_recent_ones_stay(
    client: Any,
    admin: dict[str, str],
    make_token: Any,
    settings: Settings,
    db: Database,
    run_maintenance: Any,
) -> None:
    user = f"h-{uuid.uuid4().hex[:8]}"
    _register(client, make_token, user)
    body = {"audience": {"users": [user]}, "notification": {"title": "t", "body": "b"}}
    ids = [send_and_wait(client, admin, body)["push_id"] for _ in range(2)]
    old, recent = ids
    db[pushes.PUSHES].update_one(
        {"_id": old}, {"$set": {"created_at": datetime.now(UTC) - timedelta(days=8)}}
    )
    assert run_maintenance("maintenance.expire_pushes")["count"] >= 1
    assert client.get(f"/v1/push/{old}", headers=admin).status_code == 404
    assert db[pushes.DELIVERIES].count_documents({"push_id": old}) == 0
    assert db[pushes.CHUNKS].count_documents({"push_id": old}) == 0
    assert db[pushes.CHUNK_DEVICES].count_documents({"push_id": old}) == 0
    assert client.get(f"/v1/push/{recent}", headers=admin).get_json()["counts"]["sent"] == 1
    assert db[pushes.DELIVERIES].count_documents({"push_id": recent}) == 1


def test_the_send_rate_is_shared_between_limiters_and_says_how_long_to_wait(
    settings: Settings, redis_client: Any
) -> None:
    # Two limiters stand for two worker processes: they share one window through Redis.
    platform = f"ios-{uuid.uuid4().hex[:6]}"
    first = ProviderRateLimit(settings.redis_url, {platform: "5/minute"})
    second = ProviderRateLimit(settings.redis_url, {platform: "5/minute"})
    allowed = [first.wait(platform) is None for _ in range(3)]
    allowed += [second.wait(platform) is None for _ in range(3)]
    assert allowed == [True] * 5 + [False]
    wait = first.wait(platform)
    assert wait is not None and 0 < wait <= 60


@pytest.mark.usefixtures("worker")
def test_a_chunk_over_the_rate_pauses_and_resumes_without_losing_or_doubling(
    client: Any, make_token: Any, settings: Settings, db: Database, apns_fake: Any
) -> None:
    """A chunk that reaches the shared rate stops, is redelivered when the window resets,
    and every device still gets the push exactly once."""
    push_id, tokens = _planned_push(client, make_token, db, 5)
    providers = providers_from_settings(settings)
    budget = iter([None, 0.4])  # a group of 2, then the window is full for 0.4 s
    paused = delivery.send_chunk(
        db,
        push_id,
        0,
        delivery.Sender(lambda: providers, rate_limit=lambda _p, _n: next(budget, None), group=2),
    )
    assert paused.retry_in == 1.0  # at least the 1 s a delayed redelivery can express
    assert sorted(len(apns_fake.received.get(token, [])) for token in tokens) == [0, 0, 0, 1, 1]
    resumed = delivery.send_chunk(
        db, push_id, 0, delivery.Sender(lambda: providers, rate_limit=lambda _p, _n: None)
    )
    assert resumed.counts == {"sent": 5, "failed": 0, "invalid": 0, "cancelled": 0}
    assert [len(apns_fake.received[token]) for token in tokens] == [1] * 5


def test_a_rate_smaller_than_a_group_still_lets_every_device_through(
    client: Any, make_token: Any, db: Database, settings: Settings, apns_fake: Any
) -> None:
    """A send group may not be larger than the smallest window: a take of more than the
    window holds could never pass, and the chunk would pause for ever. The worker sizes its
    groups by `ProviderRateLimit.capacity()`."""
    push_id, tokens = _planned_push(client, make_token, db, 7)
    limit = ProviderRateLimit(settings.redis_url, {"ios": "3/hour"})
    window = (limit._rates["ios"], "offgrid-push", "ios")
    limit._limiter.clear(*window)
    assert limit.capacity() == 3
    providers = providers_from_settings(settings)
    sender = delivery.Sender(
        lambda: providers, rate_limit=limit.wait, group=min(delivery.GROUP, limit.capacity())
    )
    for _ in range(5):  # 7 devices, 3 a window: three windows
        result = delivery.send_chunk(db, push_id, 0, sender)
        if result.retry_in is None:
            break
        limit._limiter.clear(*window)  # the window ends
    assert result.counts == {"sent": 7, "failed": 0, "invalid": 0, "cancelled": 0}
    assert [len(apns_fake.received[token]) for token in tokens] == [1] * 7
