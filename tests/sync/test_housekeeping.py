"""Housekeeping jobs, run as real tasks on the `maintenance` queue by a real worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.database import Database
from redis import Redis

from config import Settings
from sync import batches
from sync.scopelog import RECORDS
from workers.factory import create_celery

pytestmark = pytest.mark.usefixtures("worker")


def test_a_batch_whose_message_was_lost_is_requeued_and_applied(
    settings: Settings, db: Database, sync_client: Any, run_maintenance: Any
) -> None:
    # Stored and acknowledged to the client, but its message never reached a worker.
    batch_id = sync_client.store_unpublished(
        db, [sync_client.put("lost", {"v": 1})], created_at=datetime.now(UTC) - timedelta(hours=1)
    )
    outcome = run_maintenance("maintenance.requeue_stuck_batches")
    assert outcome["count"] >= 1
    final = sync_client.wait_final(batch_id)
    assert final["results"] == [{"id": 1, "status": "applied", "version": 1}]
    assert sync_client.pull_all()[0][("notes", "lost")]["value"] == {"v": 1}


def test_old_final_batches_expire_and_recent_ones_stay(
    settings: Settings, db: Database, sync_client: Any, run_maintenance: Any
) -> None:
    recent = sync_client.push([sync_client.put("k", {"v": 1})], wait=20).get_json()["batch_id"]
    old = sync_client.push([sync_client.put("k", {"v": 2})], wait=20).get_json()["batch_id"]
    db[batches.BATCHES].update_one(
        {"_id": old}, {"$set": {"created_at": datetime.now(UTC) - timedelta(days=30)}}
    )
    assert run_maintenance("maintenance.expire_batches")["count"] >= 1
    assert sync_client.status(old).status_code == 404
    assert sync_client.status(recent).status_code == 200


def test_tombstones_past_the_horizon_are_purged(
    settings: Settings, db: Database, sync_client: Any, run_maintenance: Any
) -> None:
    c = sync_client
    c.push([c.put("gone", {"v": 1}), c.put("fresh-gone", {"v": 1}), c.put("alive", {"v": 1})], 20)
    c.push([c.delete("gone"), c.delete("fresh-gone")], wait=20)
    db[RECORDS].update_one(
        {"_id": f"{c.scope}|notes|gone"},
        {"$set": {"changed_at": datetime.now(UTC) - timedelta(days=31)}},
    )
    assert run_maintenance("maintenance.purge_tombstones")["count"] >= 1
    keys = {d["key"] for d in db[RECORDS].find({"scope": c.scope})}
    assert keys == {"fresh-gone", "alive"}


def test_a_job_never_runs_twice_at_once(
    settings: Settings, redis_client: Redis, run_maintenance: Any
) -> None:
    lock = redis_client.lock("offgrid:job:expire_batches", timeout=30)
    assert lock.acquire(blocking=False)
    try:
        assert run_maintenance("maintenance.expire_batches") == {
            "job": "expire_batches",
            "skipped": True,
        }
    finally:
        lock.release()


def test_beat_schedule_lists_the_housekeeping_jobs(settings: Settings) -> None:
    schedule = create_celery(settings).conf.beat_schedule
    assert {entry["task"] for entry in schedule.values()} == {
        "maintenance.requeue_stuck_batches",
        "maintenance.expire_batches",
        "maintenance.purge_tombstones",
        "maintenance.send_due_pushes",
        "maintenance.prune_unseen_devices",
        "maintenance.expire_pushes",
    }
    assert all(entry["options"]["queue"] == "maintenance" for entry in schedule.values())


def test_every_beat_interval_comes_from_the_environment(test_env: dict[str, str]) -> None:
    from config import load_settings

    names = {
        "HOUSEKEEPING_INTERVAL": "maintenance.requeue_stuck_batches",
        "DUE_PUSHES_INTERVAL": "maintenance.send_due_pushes",
        "EXPIRY_INTERVAL": "maintenance.expire_batches",
        "DEVICE_PRUNE_INTERVAL": "maintenance.prune_unseen_devices",
        "TOMBSTONE_PURGE_INTERVAL": "maintenance.purge_tombstones",
    }
    env = {**test_env, **{name: str(7 + n) for n, name in enumerate(names)}}
    schedule = create_celery(load_settings(env)).conf.beat_schedule
    every = {entry["task"]: entry["schedule"] for entry in schedule.values()}
    for n, (name, task) in enumerate(names.items()):
        assert every[task] == 7 + n, name
    assert every["maintenance.expire_pushes"] == every["maintenance.expire_batches"]


def _ready(settings: Settings, queue: str) -> int:
    with create_celery(settings).connection_for_write() as conn:
        return int(conn.default_channel.queue_declare(queue=queue, passive=True)[1])


@pytest.mark.usefixtures("sync_paused")
def test_an_old_backlog_is_neither_multiplied_nor_failed(
    settings: Settings, db: Database, new_client: Any, run_maintenance: Any, worker: Any
) -> None:
    """After a long outage every phone's batches wait in line for hours. The sweep must not
    republish what is merely waiting (that multiplied the queue) nor fail it (that broke the
    promise of a 202); the backlog then drains, every batch applied."""
    clients = [new_client() for _ in range(3)]
    ids = [
        c.push([c.put(f"k{n}", {"n": n})]).get_json()["batch_id"]
        for c in clients
        for n in range(10)
    ]
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    db[batches.BATCHES].update_many(
        {"_id": {"$in": ids}}, {"$set": {"created_at": long_ago, "updated_at": long_ago}}
    )
    assert _ready(settings, "sync") == 30
    for _ in range(4):
        assert run_maintenance("maintenance.requeue_stuck_batches")["count"] == 0
    assert _ready(settings, "sync") == 30  # no message added
    assert db[batches.BATCHES].count_documents({"_id": {"$in": ids}, "status": "queued"}) == 30
    create_celery(settings).control.add_consumer("sync", destination=[worker.name], reply=True)
    finals = [
        c.wait_final(b) for c, b in zip([c for c in clients for _ in range(10)], ids, strict=True)
    ]
    assert {f["status"] for f in finals} == {"applied"}


def test_a_batch_whose_retry_was_lost_is_rescued_by_the_batch_behind_it(
    db: Database, sync_client: Any
) -> None:
    """A worker took batch 1 and its retry went down with the broker: nothing will deliver it
    again. Batch 2 arrives, parks behind it, sees it long unseen and publishes it anew."""
    c = sync_client
    first = c.store_unpublished(db, [c.put("a", {"v": 1})])
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    db[batches.BATCHES].update_one({"_id": first}, {"$set": {"seen_at": long_ago}})
    second = c.push([c.put("b", {"v": 2})]).get_json()["batch_id"]
    assert c.wait_final(first)["status"] == "applied"
    assert c.wait_final(second)["status"] == "applied"
    assert c.pull().get_json()["last_mutation_id"] == 2


def test_a_batch_parked_after_its_predecessor_was_applied_hands_itself_a_message(
    db: Database, sync_client: Any
) -> None:
    """The race: batch 2 found batch 1 pending and decided to park, but batch 1's worker applied
    it and looked for batch 2 before the parking was written, found it unparked and stopped.
    Once parked, batch 2 reads the ledger again and hands itself a message."""
    from sync import chain

    c = sync_client
    db[batches.CLIENTS].update_one(
        {"_id": c.client_id}, {"$set": {"user": c.user, "last_mutation_id": 1}}, upsert=True
    )  # batch 1 was applied meanwhile
    c.next_id = 2
    second = c.store_unpublished(db, [c.put("b", {"v": 2})])
    chain.park(db, second)
    published: list[str] = []
    waiting = db[batches.BATCHES].find_one({"_id": second})
    chain.recheck_after_parking(db, waiting, published.append)
    assert published == [second]
    assert "parked_at" not in db[batches.BATCHES].find_one({"_id": second})
