"""Operations under stress: a worker told to stop (SIGTERM, as Kubernetes and systemd do)
during a batch, and a second celery beat started by mistake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from config import Settings
from sync import batches
from sync.scopelog import RECORDS
from tests.conftest import ROOT, WorkerProcess
from workers.factory import create_celery

pytestmark = pytest.mark.usefixtures("worker")


@pytest.mark.usefixtures("sync_paused")
def test_sigterm_during_a_batch_finishes_it_and_leaves_the_next_queued(
    test_env: dict[str, str], settings: Settings, db: Database, sync_client: Any, worker: Any
) -> None:
    doomed = WorkerProcess(test_env, settings, "sigterm-worker", concurrency=1)
    c = sync_client
    first = [c.put(f"a{i}", {"n": i}) for i in range(400)]
    second = [c.put(f"b{i}", {"n": i}) for i in range(50)]
    first_id = c.push(first).get_json()["batch_id"]
    second_id = c.push(second).get_json()["batch_id"]
    deadline = time.monotonic() + 30
    while (state := c.status(first_id).get_json()["status"]) == "queued":
        assert time.monotonic() < deadline, "the worker never started the batch"
        time.sleep(0.01)
    assert state == "applying"  # the signal lands in the middle of the batch
    os.kill(doomed.proc.pid, signal.SIGTERM)  # the main process only, as a pod's PID 1 gets it
    assert doomed.proc.wait(120) == 0  # warm shutdown: it finished its work, then exited
    doomed.stop()
    # The batch in flight was finished before the worker left.
    assert c.status(first_id).get_json()["status"] == "applied"
    # The next one was not started; it waited in RabbitMQ for another worker.
    assert c.status(second_id).get_json()["status"] == "queued"
    create_celery(settings).control.add_consumer("sync", destination=[worker.name], reply=True)
    final = c.wait_final(second_id)
    assert [r["status"] for r in final["results"]] == ["applied"] * 50
    # Nothing lost, nothing doubled: every record once, at version 1, and nothing else.
    records = list(db[RECORDS].find({"scope": c.scope}, {"key": 1, "version": 1}))
    assert sorted(r["key"] for r in records) == sorted(
        [f"a{i}" for i in range(400)] + [f"b{i}" for i in range(50)]
    )
    assert {r["version"] for r in records} == {1}


def _beat(env: dict[str, str], schedule: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery_app:celery_app",
            "beat",
            "--schedule",
            str(schedule),
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _job_counts(log: Path, since: float, job: str) -> list[str]:
    """The worker's log lines for `job` runs after `since`: 'N' (work done) or 'skipped'."""
    runs = []
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        stamp = datetime.fromisoformat(entry["time"]).timestamp()
        message = entry.get("message", "")
        if stamp < since:
            continue
        if message.startswith(f"{job}: "):
            runs.append(message.split(": ", 1)[1])
        elif message.startswith(f"{job} is already running elsewhere"):
            runs.append("skipped")
    return runs


@pytest.mark.usefixtures("maintenance_paused")
def test_a_second_beat_started_by_mistake_does_no_double_work(
    test_env: dict[str, str],
    settings: Settings,
    db: Database,
    sync_client: Any,
    tmp_path: Path,
) -> None:
    # Runs that find nothing to do log at DEBUG: this test reads every run, so it asks for them.
    env = {**os.environ, **test_env, "HOUSEKEEPING_INTERVAL": "1", "LOG_LEVEL": "DEBUG"}
    worker = WorkerProcess(env, settings, "housekeeping-worker")
    c = sync_client
    # A batch acknowledged to its client whose message was lost an hour ago.
    batch_id = c.store_unpublished(
        db, [c.put("lost", {"v": 1})], created_at=datetime.now(UTC) - timedelta(hours=1)
    )
    # Batches earlier tests left waiting (a gap never filled) are "stuck" too once the suite
    # has run longer than STUCK_BATCH_AFTER; this test counts the republishes of its own only.
    db[batches.BATCHES].delete_many(
        {"status": {"$in": ["queued", "applying"]}, "_id": {"$ne": batch_id}}
    )
    since = time.time()
    beats = [_beat(env, tmp_path / f"schedule-{n}", tmp_path / f"beat-{n}.log") for n in range(2)]
    try:
        time.sleep(8)
    finally:
        for beat in beats:
            os.killpg(beat.pid, signal.SIGTERM)
            beat.wait(30)
    sent = [
        (tmp_path / f"beat-{n}.log").read_text().count("Sending due task requeue-stuck-batches")
        for n in range(2)
    ]
    assert min(sent) >= 3, f"both beats must have been sending the job: {sent}"
    time.sleep(2)  # the last runs finish
    worker.stop()
    runs = _job_counts(worker.log_path, since, "requeue_stuck_batches")
    assert len(runs) >= sum(sent) - 2  # the worker ran (or skipped) what the beats sent
    # The stuck batch was republished once in all those runs, and applied once.
    assert sum(int(r) for r in runs if r != "skipped") == 1
    doc = db[batches.BATCHES].find_one({"_id": batch_id})
    assert doc["requeues"] == 1
    final = c.wait_final(batch_id)
    assert final["results"] == [{"id": 1, "status": "applied", "version": 1}]
