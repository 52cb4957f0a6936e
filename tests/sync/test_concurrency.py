"""G3 and G5 under real concurrency: two worker processes, several writers, pulling readers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pymongo.database import Database

from config import Settings
from sync.conflicts import RecordState, resolve
from sync.scopelog import RECORDS
from tests.conftest import WorkerProcess
from tests.sync_client import SyncTestClient


@pytest.fixture(scope="module")
def two_workers(
    worker: WorkerProcess, test_env: dict[str, str], settings: Settings
) -> Iterator[None]:
    second = WorkerProcess(test_env, settings, "test-worker-2")
    yield
    second.stop()


def _shared_scope(app: Flask, admin: dict[str, str], clients: list[SyncTestClient]) -> str:
    scope = f"team:{clients[0].user}"
    http = app.test_client()
    for c in clients:
        assert http.put(
            f"/v1/admin/scopes/{scope}/members/{c.user}", json={"role": "writer"}, headers=admin
        ).status_code in (200, 201)
        c.scope = scope
    return scope


def _client(app: Flask, make_token: Any, name: str) -> SyncTestClient:
    user = f"{name}-{uuid.uuid4().hex[:10]}"  # not `random`: hypothesis seeds it per example
    return SyncTestClient(app.test_client(), make_token(user), f"device-{user}", user)


@pytest.mark.usefixtures("two_workers")
def test_g3_readers_pulling_during_concurrent_writes_miss_nothing(
    app: Flask, make_token: Any, admin: dict[str, str], db: Database
) -> None:
    writers = [_client(app, make_token, f"writer{i}") for i in range(3)]
    reader = _client(app, make_token, "reader")
    scope = _shared_scope(app, admin, [*writers, reader])
    errors: list[BaseException] = []

    def write(c: SyncTestClient, index: int) -> None:
        try:
            for batch in range(6):
                mutations = [c.put(f"w{index}-{batch}-{i}", {"n": i}) for i in range(4)]
                mutations.append(c.patch("hot", {f"w{index}": batch}))
                assert c.push(mutations).status_code == 202
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)

    held: dict[tuple[str, str], dict[str, Any]] = {}
    checkpoint = None

    def pull_once() -> bool:
        nonlocal checkpoint
        page = reader.pull({scope: checkpoint}).get_json()["scopes"][scope]
        for change in page["changes"]:
            held[(change["collection"], change["key"])] = change
        checkpoint = page["checkpoint"]
        return page["has_more"]

    threads = [threading.Thread(target=write, args=(c, i)) for i, c in enumerate(writers)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        pull_once()
    for t in threads:
        t.join()
    assert not errors, errors
    deadline = time.monotonic() + 120  # every batch writes one scope: they apply one by one
    while (
        db["sync_clients"].count_documents(
            {"_id": {"$in": [c.client_id for c in writers]}, "last_mutation_id": 30}
        )
        < 3
    ):
        assert time.monotonic() < deadline, "writers' batches were not all applied"
        pull_once()
        time.sleep(0.1)
    while pull_once():
        pass

    server = {
        (d["collection"], d["key"]): (d["value"], d["version"])
        for d in db[RECORDS].find({"scope": scope})
    }
    assert len(server) == 3 * 6 * 4 + 1
    assert {k: (v["value"], v["version"]) for k, v in held.items()} == server
    assert server[("notes", "hot")][0] == {"w0": 5, "w1": 5, "w2": 5}


def _reference(mutations: list[dict[str, Any]]) -> dict[str, Any]:
    """The lww model: each record's state from its mutations in HLC order."""
    states: dict[str, RecordState] = {}
    for m in sorted(mutations, key=lambda m: m["hlc"]):
        outcome = resolve("lww", states.get(m["key"], RecordState()), m)
        if isinstance(outcome, RecordState):
            states[m["key"]] = outcome
    return {key: s.snapshot() for key, s in states.items() if not s.deleted}


ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "patch", "delete"]),
        st.sampled_from(["k1", "k2", "k3"]),
        st.dictionaries(
            st.sampled_from(["a", "b", "c"]), st.one_of(st.none(), st.integers(0, 9)), min_size=1
        ),
    ),
    min_size=1,
    max_size=8,
)


@pytest.mark.usefixtures("two_workers")
@hsettings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(ops, min_size=2, max_size=3), st.randoms(use_true_random=False))
def test_g5_offline_clients_converge_to_the_reference_model(
    app: Flask, make_token: Any, admin: dict[str, str], plans: list[Any], rnd: Any
) -> None:
    """Several offline clients edit shared records; their batches arrive shuffled and some
    twice; the server ends in the state the lww model gives, and every client pulls it."""
    clients = [_client(app, make_token, f"sim{i}") for i in range(len(plans))]
    scope = _shared_scope(app, admin, clients)
    everything: list[dict[str, Any]] = []
    deliveries: list[tuple[SyncTestClient, list[dict[str, Any]]]] = []
    for c, plan in zip(clients, plans, strict=True):
        made = []
        for op, key, value in plan:
            if op == "put":
                value = {k: v for k, v in value.items() if v is not None}
            made.append(c.mutation(op, key, None if op == "delete" else value))
        everything += made
        cut = rnd.randint(1, len(made))
        batches = [made[:cut], made[cut:]] if cut < len(made) else [made]
        deliveries += [(c, b) for b in batches]
    deliveries += rnd.sample(deliveries, k=1)  # one batch is sent twice
    rnd.shuffle(deliveries)

    batch_ids = [(c, c.push(b).get_json()["batch_id"]) for c, b in deliveries]
    for c, batch_id in batch_ids:
        assert c.wait_final(batch_id, timeout=60)["status"] == "applied"

    expected = _reference(everything)
    for c in clients:
        pulled, _ = c.pull_all(scope)
        assert {k[1]: v["value"] for k, v in pulled.items()} == expected
