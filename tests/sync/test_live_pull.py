"""Live pull (SPEC §2): `Prefer: wait=N` holds a pull with nothing new until a commit in one of
its scopes, through a real worker, Redis pub/sub and the database."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jwt
import pytest

import api.sync as api_sync
from api.resources import resources
from config import Settings
from sync.checkpoint import Checkpoint
from tests.sync_client import SyncTestClient

pytestmark = pytest.mark.usefixtures("worker")


def _held(
    app: Any, c: SyncTestClient, scopes: dict[str, str | None], wait: int, **headers: str
) -> Future:
    """Start a live pull in another thread; its future gives (reply, seconds it took)."""

    def run() -> tuple[Any, float]:
        started = time.monotonic()
        reply = app.test_client().post(
            "/v1/sync/pull",
            json={"client_id": c.client_id, "scopes": scopes},
            headers={**c.headers, "Prefer": f"wait={wait}", **headers},
        )
        return reply, time.monotonic() - started

    return ThreadPoolExecutor(1).submit(run)


def _settle(app: Any, count: int = 1) -> None:
    """Wait until `count` live pulls are held (so the test's commit comes after they wait)."""
    hub = resources(app).live
    deadline = time.monotonic() + 10
    while hub.waiting < count:
        assert time.monotonic() < deadline, f"{hub.waiting} pulls held, want {count}"
        time.sleep(0.01)


def test_a_held_pull_returns_with_another_clients_commit(app: Any, shared_members: Any) -> None:
    alice, bob = shared_members(2)
    _, checkpoint = bob.pull_all()
    held = _held(app, bob, {bob.scope: checkpoint}, wait=30)
    _settle(app)
    assert alice.push([alice.put("n1", {"v": 1})], wait=20).status_code == 200
    reply, took = held.result(timeout=40)
    assert reply.status_code == 200
    assert reply.headers["Preference-Applied"] == "wait=30"
    changes = reply.get_json()["scopes"][bob.scope]["changes"]
    assert [(x["key"], x["value"]) for x in changes] == [("n1", {"v": 1})]
    assert took < 25  # woken by the commit, not by the timeout


def test_a_held_pull_with_nothing_to_see_times_out_with_the_same_checkpoint(
    app: Any, sync_client: SyncTestClient
) -> None:
    c = sync_client
    assert c.push([c.put("k", {"v": 1})], wait=20).status_code == 200
    _, checkpoint = c.pull_all()
    reply, took = _held(app, c, {c.scope: checkpoint}, wait=2).result(timeout=30)
    assert reply.status_code == 200 and took >= 2
    assert reply.headers["Preference-Applied"] == "wait=2"
    page = reply.get_json()["scopes"][c.scope]
    assert page == {"changes": [], "checkpoint": checkpoint, "has_more": False}


def test_a_quiet_scope_pulled_live_for_weeks_gets_a_renewed_checkpoint_not_a_410(
    app: Any, sync_client: SyncTestClient, settings: Settings
) -> None:
    """A checkpoint handed back unchanged at every timeout would age past the tombstone horizon
    (410 resync) though nothing ever changed. Past half the horizon the live pull renews it:
    same position, issued now."""
    c = sync_client
    assert c.push([c.put("k", {"v": 1})], wait=20).status_code == 200
    _, checkpoint = c.pull_all()
    current = Checkpoint.decode(checkpoint)
    aged_ms = current.issued_ms - (settings.tombstone_horizon_seconds * 1000 * 2) // 3
    aged = Checkpoint(current.seq, aged_ms, current.acknowledged).encode()
    reply, _ = _held(app, c, {c.scope: aged}, wait=1).result(timeout=30)
    page = reply.get_json()["scopes"][c.scope]
    assert page["changes"] == [] and page["checkpoint"] != aged
    renewed = Checkpoint.decode(page["checkpoint"])
    assert (renewed.seq, renewed.acknowledged) == (current.seq, current.acknowledged)
    assert renewed.issued_ms >= current.issued_ms


def test_a_pull_with_changes_is_answered_at_once(app: Any, sync_client: SyncTestClient) -> None:
    c = sync_client
    assert c.push([c.put("k", {"v": 1})], wait=20).status_code == 200
    reply, took = _held(app, c, {c.scope: None}, wait=30).result(timeout=30)
    assert [x["key"] for x in reply.get_json()["scopes"][c.scope]["changes"]] == ["k"]
    assert took < 20


def test_a_held_pull_of_several_scopes_wakes_on_any_of_them(app: Any, shared_members: Any) -> None:
    alice, bob = shared_members(2)
    _, team_cp = bob.pull_all()
    _, own_cp = bob.pull_all(f"user:{bob.user}")
    held = _held(app, bob, {f"user:{bob.user}": own_cp, bob.scope: team_cp}, wait=30)
    _settle(app)
    assert alice.push([alice.put("shared", {"v": 2})], wait=20).status_code == 200
    reply, took = held.result(timeout=40)
    scopes = reply.get_json()["scopes"]
    assert [x["key"] for x in scopes[bob.scope]["changes"]] == ["shared"]
    assert scopes[f"user:{bob.user}"]["changes"] == []
    assert took < 25


@pytest.mark.parametrize("subscribed", [False, True], ids=["fresh-process", "subscribed"])
def test_a_commit_right_after_the_first_look_is_not_missed(
    app: Any, shared_members: Any, monkeypatch: pytest.MonkeyPatch, subscribed: bool
) -> None:
    """The race, injected: the pull's first look finds nothing, then, before it starts waiting,
    another member's batch is applied and announced. The pull registered and subscribed before
    looking, so the announcement reaches it and it returns at once with the change (not at
    its timeout). In a fresh process the hub subscribes during that same pull."""
    alice, bob = shared_members(2)
    _, checkpoint = bob.pull_all()
    if subscribed:
        assert resources(app).live.subscribed(10)
    looks: list[dict[str, Any]] = []
    real_pull = api_sync._pull

    def look_then_commit(body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        reply = real_pull(body, **kwargs)
        looks.append(reply)
        if len(looks) == 1:
            assert alice.push([alice.put("raced", {"v": 1})], wait=20).status_code == 200
        return reply

    monkeypatch.setattr(api_sync, "_pull", look_then_commit)
    reply, took = _held(app, bob, {bob.scope: checkpoint}, wait=30).result(timeout=40)
    assert looks[0]["scopes"][bob.scope]["changes"] == []  # the first look saw nothing
    changes = reply.get_json()["scopes"][bob.scope]["changes"]
    assert [(x["key"], x["value"]) for x in changes] == [("raced", {"v": 1})]
    assert took < 20


@pytest.mark.parametrize("commit", [True, False], ids=["a-commit-wakes-it", "no-commit"])
def test_losing_membership_ends_a_held_pull_with_403(
    app: Any, shared_members: Any, admin: dict[str, str], commit: bool
) -> None:
    # Woken by a commit in the scope, or at its timeout with no commit at all: either way the
    # membership is read again, and the pull ends with 403.
    alice, bob = shared_members(2)
    _, checkpoint = bob.pull_all()
    held = _held(app, bob, {bob.scope: checkpoint}, wait=30 if commit else 3)
    _settle(app)
    bob.http.delete(f"/v1/admin/scopes/{bob.scope}/members/{bob.user}", headers=admin)
    if commit:
        assert alice.push([alice.put("after", {"v": 1})], wait=20).status_code == 200
    reply, _ = held.result(timeout=40)
    assert reply.status_code == 403
    assert reply.get_json()["error"]["code"] == "forbidden"


def test_a_token_expiring_while_held_ends_the_pull_with_401(
    app: Any, sync_client: SyncTestClient, settings: Settings
) -> None:
    c = sync_client
    _, checkpoint = c.pull_all()
    # Still accepted for about 2 s (the server allows 30 s of clock leeway past `exp`).
    exp = int(time.time()) - 28
    token = jwt.encode({"sub": c.user, "exp": exp}, settings.jwt_secret, algorithm="HS256")
    reply, took = _held(
        app, c, {c.scope: checkpoint}, wait=30, Authorization=f"Bearer {token}"
    ).result(timeout=40)
    assert reply.status_code == 401 and took < 20


def test_shutdown_answers_held_pulls_at_once(
    settings: Settings, sync_client: SyncTestClient
) -> None:
    from api import create_app

    app = create_app(settings)  # its own hub, closed as a process shutting down closes it
    c = sync_client
    _, checkpoint = c.pull_all()
    held = [_held(app, c, {c.scope: checkpoint}, wait=60) for _ in range(3)]
    _settle(app, 3)
    threading.Timer(0.2, resources(app).live.close).start()
    for future in held:
        reply, took = future.result(timeout=30)
        assert reply.status_code == 200 and took < 20
        assert reply.get_json()["scopes"][c.scope]["changes"] == []
