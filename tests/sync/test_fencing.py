"""Fenced commits (SPEC §7): a worker whose scope lock expired while it was frozen can never
commit. A real worker child is stopped (SIGSTOP) while it holds a shared scope, past LOCK_TTL;
another member's batch in that scope is applied meanwhile by the other child; the frozen one is
resumed (SIGCONT). Its stale writes must be refused, and its batch then applies on top of the
newer writer's, once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database
from redis import Redis

from sync.faults import CRASH_KEY, FROZEN_KEY
from sync.scopelog import RECORDS, SCOPES
from tests.conftest import WorkerProcess

pytestmark = pytest.mark.usefixtures("worker")


class Follower:
    """A member that pulls the scope page by page, following its checkpoints, all along: a
    change committed behind a checkpoint it was handed would never reach it (G3)."""

    def __init__(self, member: Any) -> None:
        self.member, self.checkpoint = member, None
        self.view: dict[tuple[str, str], Any] = {}
        self.acknowledged: list[int] = []

    def step(self) -> None:
        reply = self.member.pull({self.member.scope: self.checkpoint}, limit=1)
        assert reply.status_code == 200, reply.get_data(as_text=True)
        body = reply.get_json()
        page = body["scopes"][self.member.scope]
        for change in page["changes"]:
            self.view[(change["collection"], change["key"])] = change["value"]
        self.checkpoint = page["checkpoint"]
        self.acknowledged.append(body["last_mutation_id"])

    def for_a_while(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.step()
            time.sleep(0.05)


def _log_mentions(log_path: Path, since: int, text: str) -> int:
    return log_path.read_text()[since:].count(text)


@pytest.mark.parametrize("step", ["before_commit", "before_record_write"])
def test_a_frozen_writer_that_lost_its_scope_is_refused_and_nothing_is_lost_or_doubled(
    step: str,
    shared_members: Any,
    db: Database,
    redis_client: Redis,
    worker: WorkerProcess,
) -> None:
    stale, newer, reader = shared_members(3)
    follower = Follower(reader)
    logged = len(worker.log_path.read_text())
    # Before: a committed record the stale writer will change (its base).
    seed = stale.push([stale.put("doc", {"by": "seed"})]).get_json()["batch_id"]
    assert stale.wait_final(seed)["status"] == "applied"
    follower.for_a_while(0.5)

    redis_client.delete(FROZEN_KEY)
    redis_client.set(CRASH_KEY, f"freeze:{step}")
    mine = [
        stale.put("doc", {"by": "stale"}),
        stale.put("likes", {"delta": 1}, "counters"),
        stale.put("only-stale", {"v": 1}),  # a record the newer writer never touches
    ]
    frozen_batch = stale.push(mine).get_json()["batch_id"]
    deadline = time.monotonic() + 20
    while (pid := redis_client.get(FROZEN_KEY)) is None:
        assert time.monotonic() < deadline, "no worker reached the freeze point"
        time.sleep(0.05)
    pid = int(pid)
    try:
        follower.for_a_while(4)  # past LOCK_TTL (3 s in the suite): the stale locks expire
        theirs = [newer.put("doc", {"by": "newer"}), newer.put("likes", {"delta": 1}, "counters")]
        newer_batch = newer.push(theirs).get_json()["batch_id"]
        final = newer.wait_final(newer_batch)
        assert final["status"] == "applied", final
        follower.for_a_while(0.5)
    finally:
        os.kill(pid, signal.SIGCONT)
    final = stale.wait_final(frozen_batch, timeout=60)
    follower.for_a_while(1.5)

    # The stale writer's commit was refused by the database, not let through.
    assert _log_mentions(worker.log_path, logged, "LeaseLost") >= 1
    assert final["status"] == "applied"
    assert [r["status"] for r in final["results"]] == ["applied"] * 3
    # Nothing lost, nothing doubled: both increments count once; the newer write to `doc` (a
    # later clock) stays; the stale writer's own record is there.
    everything, _ = reader.pull_all()
    values = {key: change["value"] for (_, key), change in everything.items()}
    assert values == {"doc": {"by": "newer"}, "likes": {"total": 2}, "only-stale": {"v": 1}}
    # G3: the member that followed page by page all along ends with exactly that state.
    assert {key: value for (_, key), value in follower.view.items()} == values
    # No seq was handed out twice, and every record is under the watermark.
    docs = list(db[RECORDS].find({"scope": stale.scope}, {"seq": 1}))
    seqs = [d["seq"] for d in docs]
    assert len(seqs) == len(set(seqs)) == 3
    head = db[SCOPES].find_one({"_id": stale.scope})
    assert max(seqs) <= head["committed_seq"]
    assert "intent" not in head
    # G4b for the follower's pulls: the acknowledged id never went down.
    assert follower.acknowledged == sorted(follower.acknowledged)
