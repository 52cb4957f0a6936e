"""Sync tickles: a batch that changes a shared scope sends one silent push to the other
members' devices (debounced per scope), delivered here through the local Web Push service."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("worker")


def _member_with_device(
    client: Any, admin: dict[str, str], make_token: Any, fake: Any, scope: str, name: str
) -> tuple[Any, str]:
    from tests.sync_client import SyncTestClient

    user = f"{name}-{uuid.uuid4().hex[:8]}"
    client.put(f"/v1/admin/scopes/{scope}/members/{user}", json={"role": "writer"}, headers=admin)
    subscription = fake.subscribe()
    reply = client.post(
        "/v1/devices",
        json={"platform": "web", "token": subscription},
        headers={"Authorization": f"Bearer {make_token(user)}"},
    )
    assert reply.status_code == 201
    member = SyncTestClient(client, make_token(user), f"device-{uuid.uuid4().hex[:12]}", user)
    member.scope = scope
    return member, fake.sub_id(subscription)


def test_other_members_get_one_silent_push_per_scope(
    client: Any, admin: dict[str, str], make_token: Any, webpush_fake: Any
) -> None:
    scope = f"team:{uuid.uuid4().hex[:8]}"
    alice, alice_sub = _member_with_device(client, admin, make_token, webpush_fake, scope, "alice")
    bob, bob_sub = _member_with_device(client, admin, make_token, webpush_fake, scope, "bob")

    assert alice.push([alice.put("doc", {"v": 1})], wait=20).status_code == 200
    assert alice.push([alice.put("doc", {"v": 2})], wait=20).status_code == 200  # same window

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not webpush_fake.received.get(bob_sub):
        time.sleep(0.1)
    time.sleep(1)  # give a wrongly doubled tickle the time to arrive too
    tickles = webpush_fake.received.get(bob_sub, [])
    assert len(tickles) == 1
    assert tickles[0]["notification"] is None
    assert tickles[0]["data"] == {"type": "sync", "scope": scope}
    assert alice_sub not in webpush_fake.received  # the writer is not tickled
    # The tickle says "pull": bob's pull brings the change.
    records, _ = bob.pull_all(scope)
    assert records[("notes", "doc")]["value"] == {"v": 2}


def test_personal_scopes_are_not_tickled(
    client: Any, admin: dict[str, str], make_token: Any, webpush_fake: Any, sync_client: Any
) -> None:
    subscription = webpush_fake.subscribe()
    client.post(
        "/v1/devices",
        json={"platform": "web", "token": subscription},
        headers=sync_client.headers,
    )
    assert sync_client.push([sync_client.put("own", {"v": 1})], wait=20).status_code == 200
    time.sleep(1.5)
    assert webpush_fake.sub_id(subscription) not in webpush_fake.received


def test_ios_devices_get_at_most_one_tickle_per_window_whatever_the_scopes(
    db: Any, redis_client: Any
) -> None:
    """Apple throttles background pushes: an iOS device is tickled once per window (15 min by
    default) even when its scopes commit more often; other platforms follow the scope window."""
    from push import devices, pushes, tickles
    from sync import membership

    writer, reader = f"w-{uuid.uuid4().hex[:8]}", f"r-{uuid.uuid4().hex[:8]}"
    phone, _ = devices.register(db, user=reader, platform="ios", token=uuid.uuid4().hex * 2)
    tablet, _ = devices.register(db, user=reader, platform="android", token=uuid.uuid4().hex)
    audiences = []
    for n in range(3):  # three shared scopes change, one after another
        scope = f"team:{uuid.uuid4().hex[:8]}"
        for user in (writer, reader):
            membership.set_member(db, scope, user, "writer")
        batch = {"_id": f"b{n}-{uuid.uuid4().hex}", "user": writer,
                 "mutations": [{"id": 1, "scope": scope}],
                 "results": [{"id": 1, "status": "applied"}]}  # fmt: skip
        for push_id in tickles.tickle_scopes(db, redis_client, batch, 1, ios_window_seconds=60):
            audiences.append(db[pushes.PUSHES].find_one({"_id": push_id})["audience"])
    assert audiences == [
        {"devices": sorted([phone, tablet])},
        {"devices": [tablet]},
        {"devices": [tablet]},
    ]
