"""G1: every mutation takes effect once: resubmitted, delivered twice, or its worker killed
between any two steps of applying the batch (fault injection in a real worker process)."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.database import Database
from redis import Redis

from config import Settings
from sync.faults import CRASH_KEY, STEPS
from sync.scopelog import RECORDS
from workers.factory import create_celery

pytestmark = pytest.mark.usefixtures("worker")


def _team(client: Any, admin: dict[str, str]) -> str:
    scope = f"team:{client.user}"
    reply = client.http.put(
        f"/v1/admin/scopes/{scope}/members/{client.user}", json={"role": "writer"}, headers=admin
    )
    assert reply.status_code in (200, 201)
    return scope


def _batch(client: Any, team: str) -> list[dict[str, Any]]:
    account = client.put("acc", {"name": "cash", "balance_cents": 100}, "accounts", base_version=0)
    note = client.put("n1", {"text": "hello"})
    patch = client.patch("n1", {"done": True})
    shared = client.put("shared", {"v": 1})
    shared["scope"] = team  # the batch spans two scopes, so it commits twice
    return [account, note, patch, shared]


def _assert_applied_once(client: Any, db: Database, team: str, final: dict[str, Any]) -> None:
    assert final["status"] == "applied", final
    assert [r["status"] for r in final["results"]] == ["applied"] * 4
    assert [r["version"] for r in final["results"]] == [1, 1, 2, 1]
    assert final["last_mutation_id"] == 4
    account = db[RECORDS].find_one({"_id": f"{client.scope}|accounts|acc"})
    note = db[RECORDS].find_one({"_id": f"{client.scope}|notes|n1"})
    shared = db[RECORDS].find_one({"_id": f"{team}|notes|shared"})
    assert (account["version"], note["version"], shared["version"]) == (1, 2, 1)
    assert note["value"] == {"text": "hello", "done": True}
    mine, _ = client.pull_all()
    assert {k: v["value"] for k, v in mine.items()} == {
        ("accounts", "acc"): {"name": "cash", "balance_cents": 100},
        ("notes", "n1"): {"text": "hello", "done": True},
    }
    ours, _ = client.pull_all(team)
    assert ours[("notes", "shared")]["value"] == {"v": 1}
    assert client.pull().get_json()["last_mutation_id"] == 4


@pytest.mark.parametrize("step", STEPS)
def test_g1_worker_killed_at_each_step_applies_exactly_once(
    step: str,
    new_client: Any,
    admin: dict[str, str],
    db: Database,
    redis_client: Redis,
) -> None:
    client = new_client()
    team = _team(client, admin)
    redis_client.set(CRASH_KEY, step)
    batch_id = client.push(_batch(client, team)).get_json()["batch_id"]
    final = client.wait_final(batch_id, timeout=60)
    assert redis_client.get(CRASH_KEY) is None, "the armed crash never happened"
    _assert_applied_once(client, db, team, final)


def test_g1_resubmitted_and_redelivered_batches_change_nothing(
    new_client: Any, admin: dict[str, str], db: Database, settings: Settings
) -> None:
    client = new_client()
    team = _team(client, admin)
    mutations = _batch(client, team)
    first = client.push(mutations, wait=20).get_json()
    _assert_applied_once(client, db, team, first)

    again = client.push(mutations, wait=20).get_json()  # the app resends after a lost reply
    assert [r["status"] for r in again["results"]] == ["duplicate"] * 4

    # RabbitMQ delivers the original message a second time.
    celery = create_celery(settings)
    for batch_id in (first["batch_id"], again["batch_id"]):
        redelivery = celery.send_task(
            "sync.apply_batch",
            args=[batch_id],
            queue="sync",
            routing_key="sync",
            ignore_result=False,  # the task stores none unless asked: this test waits on it
        )
        assert redelivery.get(timeout=30)["status"] == "applied"
    _assert_applied_once(client, db, team, client.status(first["batch_id"]).get_json())
