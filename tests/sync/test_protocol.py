"""The SPEC §2 protocol end to end through RabbitMQ and a real worker: ops, strategies, limits."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from api import create_app
from config import Settings
from tests.sync_client import SyncTestClient
from workers.factory import create_celery

pytestmark = pytest.mark.usefixtures("worker")


def _results(reply: Any) -> list[dict[str, Any]]:
    assert reply.status_code == 200, reply.get_data(as_text=True)
    body = reply.get_json()
    assert body["status"] == "applied", body
    return body["results"]


def test_patch_merges_and_null_removes_a_field(sync_client: SyncTestClient) -> None:
    c = sync_client
    _results(c.push([c.put("n1", {"a": 1, "b": 2}), c.patch("n1", {"b": None, "c": 3})], wait=20))
    records, _ = c.pull_all()
    assert records[("notes", "n1")]["value"] == {"a": 1, "c": 3}


def test_delete_leaves_a_tombstone_and_a_later_put_revives(sync_client: SyncTestClient) -> None:
    c = sync_client
    _results(c.push([c.put("n1", {"a": 1})], wait=20))
    _, checkpoint = c.pull_all()
    _results(c.push([c.delete("n1")], wait=20))
    changes, checkpoint = c.pull_all(checkpoint=checkpoint)
    assert changes[("notes", "n1")]["deleted"] is True
    assert changes[("notes", "n1")]["value"] is None
    initial, _ = c.pull_all()
    assert ("notes", "n1") not in initial  # an initial sync returns live records only
    _results(c.push([c.put("n1", {"a": 2})], wait=20))
    changes, _ = c.pull_all(checkpoint=checkpoint)
    assert changes[("notes", "n1")] == {
        "collection": "notes",
        "key": "n1",
        "value": {"a": 2},
        "deleted": False,
        "version": 3,
    }


def test_lww_keeps_concurrent_edits_of_different_fields(shared_members: Any) -> None:
    alice, bob = shared_members(2)
    _results(alice.push([alice.put("doc", {"title": "draft", "body": "x"})], wait=20))
    # Both edit offline; bob's clock is later for `body`, alice's later for `title`.
    bob_edit = bob.patch("doc", {"body": "bob's text"})
    time.sleep(0.01)
    alice_edit = alice.patch("doc", {"title": "final"})
    _results(alice.push([alice_edit], wait=20))
    _results(bob.push([bob_edit], wait=20))
    records, _ = alice.pull_all()
    assert records[("notes", "doc")]["value"] == {"title": "final", "body": "bob's text"}


def test_g4_a_superseded_write_is_corrected_for_a_client_that_skipped_the_newer_record(
    shared_members: Any,
) -> None:
    """The RxDB pattern: a client skips pulled records it has pending writes for. Its write then
    loses to a newer one; the result says so, and its next pull brings the server's record."""
    alice, bob = shared_members(2)
    bob_edit = bob.put("doc", {"title": "bob"})  # made offline, before alice's
    time.sleep(0.01)
    created = _results(alice.push([alice.put("doc", {"title": "alice"})], wait=20))
    # Bob pulls while his edit is pending and skips the record, as his client library does.
    page, checkpoint = bob.pull_all()
    assert page[("notes", "doc")]["value"] == {"title": "alice"}
    result = _results(bob.push([bob_edit], wait=20))
    assert result == [
        {"id": 1, "status": "applied", "version": created[0]["version"],
         "current": {"title": "alice"}}
    ]  # fmt: skip
    changes, _ = bob.pull_all(checkpoint=checkpoint)
    assert changes[("notes", "doc")]["value"] == {"title": "alice"}


def test_applied_results_carry_the_version_and_current_when_the_outcome_differs(
    shared_members: Any,
) -> None:
    alice, bob = shared_members(2)
    first = _results(alice.push([alice.put("doc", {"title": "draft"})], wait=20))
    assert first == [{"id": 1, "status": "applied", "version": 1}]  # as asked: no `current`
    bob_edit = bob.patch("doc", {"title": "old", "body": "bob's"})
    time.sleep(0.01)
    _results(alice.push([alice.patch("doc", {"title": "new"})], wait=20))
    # Bob's patch is the newest write to `body`, older than alice's to `title`: half of it wins.
    partial = _results(bob.push([bob_edit], wait=20))
    assert partial == [
        {"id": 1, "status": "applied", "version": 3,
         "current": {"title": "new", "body": "bob's"}}
    ]  # fmt: skip
    counted = _results(alice.push([alice.put("likes", {"delta": 2}, "counters")], wait=20))
    assert counted == [{"id": 3, "status": "applied", "version": 1, "current": {"total": 2}}]


def test_server_wins_rejects_a_stale_base_version_with_the_current_record(
    sync_client: SyncTestClient,
) -> None:
    c = sync_client
    account = {"name": "cash", "balance_cents": 100}
    first = _results(c.push([c.put("acc", account, "accounts", base_version=0)], wait=20))
    assert first == [{"id": 1, "status": "applied", "version": 1}]
    ok = _results(
        c.push(
            [c.put("acc", {**account, "balance_cents": 90}, "accounts", base_version=1)], wait=20
        )
    )
    assert ok[0]["version"] == 2
    stale = _results(
        c.push([c.put("acc", {**account, "balance_cents": 0}, "accounts", base_version=1)], wait=20)
    )
    assert stale[0]["status"] == "rejected"
    assert stale[0]["reason"] == "conflict"
    assert stale[0]["current"] == {"name": "cash", "balance_cents": 90}
    assert stale[0]["version"] == 2


def test_clock_too_far_ahead_is_rejected(sync_client: SyncTestClient) -> None:
    c = sync_client
    future = int(time.time() * 1000) + 3600_000
    mutation = c.put("n1", {"a": 1})
    mutation["hlc"] = f"{future:013d}-0000-{c.client_id}"
    assert _results(c.push([mutation], wait=20))[0]["reason"] == "clock_skew"
    assert c.pull_all()[0] == {}


def test_g2_batches_arriving_out_of_order_apply_in_id_order(sync_client: SyncTestClient) -> None:
    c = sync_client
    early = [c.put("k", {"n": "first"}), c.patch("k", {"seen": ["first"]})]
    late = [c.patch("k", {"n": "second"}), c.patch("k", {"seen": ["first", "second"]})]
    waiting = c.push(late)  # ids 3-4 arrive first: they wait for 1-2
    assert waiting.status_code == 202
    time.sleep(0.5)
    assert c.status(waiting.get_json()["batch_id"]).get_json()["status"] == "queued"
    _results(c.push(early, wait=20))
    final = c.wait_final(waiting.get_json()["batch_id"])
    assert [r["status"] for r in final["results"]] == ["applied", "applied"]
    assert final["last_mutation_id"] == 4
    records, _ = c.pull_all()
    assert records[("notes", "k")]["value"] == {"n": "second", "seen": ["first", "second"]}


def test_a_chain_of_waiting_batches_applies_as_soon_as_the_gap_fills(
    sync_client: SyncTestClient, db: Any, settings: Settings
) -> None:
    """A phone flushes its outbox newest first while its first batch sits deep in a backlog:
    once that one is applied, the seven behind it follow at once, not at their retry times."""
    c = sync_client
    first = c.store_unpublished(db, [c.put(f"k{i}", {"i": i}) for i in range(5)])
    later = [[c.put(f"k{i}", {"i": i}) for i in range(b, b + 5)] for b in range(5, 40, 5)]
    waiting = [c.push(batch).get_json()["batch_id"] for batch in reversed(later)]
    time.sleep(8)  # long enough for a retry schedule to back off to 8-16 s
    assert {c.status(b).get_json()["status"] for b in waiting} == {"queued"}
    create_celery(settings).send_task(
        "sync.apply_batch", args=[first], queue="sync", routing_key="sync"
    )  # the first batch's turn in the backlog comes
    assert c.wait_final(first)["status"] == "applied"
    newest = c.wait_final(waiting[0], timeout=10)
    assert newest["status"] == "applied" and newest["last_mutation_id"] == 40
    assert all(c.status(b).get_json()["status"] == "applied" for b in waiting)
    records, _ = c.pull_all()
    assert {key: r["version"] for (_, key), r in records.items()} == {f"k{i}": 1 for i in range(40)}


def test_g4_a_rejected_write_is_corrected_by_the_next_pull(sync_client: SyncTestClient) -> None:
    c = sync_client
    account = {"name": "cash", "balance_cents": 100}
    _results(c.push([c.put("acc", account, "accounts", base_version=0)], wait=20))
    _, checkpoint = c.pull_all()
    # The client changed the record locally with a stale base; the server refuses it.
    result = _results(
        c.push([c.put("acc", {"name": "mine", "balance_cents": 1}, "accounts", base_version=7)], 20)
    )
    assert result[0]["reason"] == "conflict"
    changes, _ = c.pull_all(checkpoint=checkpoint)
    assert changes[("accounts", "acc")]["value"] == account
    # A rejected create of a record that does not exist comes back as deleted.
    bad = _results(c.push([c.put("t9", {"title": ""}, "todos")], wait=20))
    assert bad[0]["reason"] == "validation"
    changes, _ = c.pull_all(checkpoint=checkpoint)
    assert changes[("todos", "t9")]["deleted"] is True


def test_g4b_last_mutation_id_never_runs_ahead_of_visible_effects(
    sync_client: SyncTestClient,
) -> None:
    c = sync_client
    batch = c.push([c.put(f"k{i}", {"i": i}) for i in range(30)]).get_json()["batch_id"]
    seen: dict[tuple[str, str], Any] = {}
    checkpoint = None
    while True:
        body = c.pull({c.scope: checkpoint}).get_json()
        page = body["scopes"][c.scope]
        seen.update({(x["collection"], x["key"]): x for x in page["changes"]})
        checkpoint = page["checkpoint"]
        acknowledged = body["last_mutation_id"]
        # Every acknowledged mutation's effect is in what this client now holds.
        assert all(("notes", f"k{i}") in seen for i in range(acknowledged)), acknowledged
        if acknowledged == 30 and not page["has_more"]:
            break
    assert c.wait_final(batch)["status"] == "applied"


def _follow_pages(
    c: SyncTestClient, scopes: list[str], limit: int, keys_of: dict[int, tuple[str, str]]
) -> list[int]:
    """Pull `scopes` from scratch in pages of `limit`, checking G4b on every page: each of the
    client's ids up to `last_mutation_id` has its record among the pages received so far."""
    held: set[tuple[str, str]] = set()
    checkpoints: dict[str, str | None] = dict.fromkeys(scopes)
    reported: list[int] = []
    while True:
        body = c.pull(checkpoints, limit=limit).get_json()
        for scope, page in body["scopes"].items():
            held.update((scope, change["key"]) for change in page["changes"])
            checkpoints[scope] = page["checkpoint"]
        acknowledged = body["last_mutation_id"]
        missing = [n for n in range(1, acknowledged + 1) if keys_of[n] not in held]
        assert missing == [], f"last_mutation_id {acknowledged} but ids {missing} not pulled yet"
        reported.append(acknowledged)
        if not any(page["has_more"] for page in body["scopes"].values()):
            return reported


def test_g4b_holds_on_every_page_of_a_paged_pull(sync_client: SyncTestClient) -> None:
    c = sync_client
    batches = [
        c.push([c.put(f"k{i}", {"i": i}) for i in range(b * 10, b * 10 + 10)]) for b in range(3)
    ]
    for reply in batches:
        assert c.wait_final(reply.get_json()["batch_id"])["status"] == "applied"
    keys_of = {i + 1: (c.scope, f"k{i}") for i in range(30)}
    reported = _follow_pages(c, [c.scope], 4, keys_of)
    assert reported == sorted(reported), "last_mutation_id went down along the chain"
    assert reported[-1] == 30


def test_g4b_holds_on_every_page_of_a_pull_of_several_scopes(
    new_client: Any, admin: dict[str, str]
) -> None:
    c = new_client()
    team = f"team:{c.user}"
    c.http.put(f"/v1/admin/scopes/{team}/members/{c.user}", json={"role": "writer"}, headers=admin)
    mutations, keys_of = [], {}
    for i in range(24):
        m = c.put(f"k{i}", {"i": i})
        m["scope"] = team if i % 3 else c.scope
        mutations.append(m)
        keys_of[m["id"]] = (m["scope"], m["key"])
    for start in range(0, 24, 6):
        assert c.push(mutations[start : start + 6], wait=20).get_json()["status"] == "applied"
    reported = _follow_pages(c, [c.scope, team], 3, keys_of)
    assert reported == sorted(reported) and reported[-1] == 24


def test_g4b_a_record_being_recommitted_is_not_acknowledged_yet(
    new_client: Any, admin: dict[str, str], db: Any
) -> None:
    """Another writer has re-stamped the client's record above the watermark and not yet raised
    it (a commit in progress, or a writer that died there): the record is invisible, so its
    mutation is not acknowledged, and is once the commit completes."""
    from sync.scopelog import RECORDS, SCOPES

    alice, bob = new_client(), new_client()
    team = f"team:{alice.user}"
    for member in (alice, bob):
        alice.http.put(
            f"/v1/admin/scopes/{team}/members/{member.user}", json={"role": "writer"}, headers=admin
        )
    first, shared = alice.put("mine", {"v": 1}), alice.put("ours", {"v": 1})
    first["scope"] = shared["scope"] = team
    assert alice.push([first, shared], wait=20).get_json()["status"] == "applied"
    head = db[SCOPES].find_one({"_id": team})["committed_seq"]
    # What bob's writer leaves between its record write and its head write.
    db[RECORDS].update_one(
        {"_id": f"{team}|notes|ours"},
        {"$set": {"seq": head + 1}, "$push": {"writers": f"{bob.client_id}:1"}},
    )
    body = alice.pull({team: None}).get_json()
    assert [x["key"] for x in body["scopes"][team]["changes"]] == ["mine"]
    assert body["last_mutation_id"] == 1
    db[SCOPES].update_one({"_id": team}, {"$set": {"committed_seq": head + 1}})  # the commit ends
    body = alice.pull({team: body["scopes"][team]["checkpoint"]}).get_json()
    assert [x["key"] for x in body["scopes"][team]["changes"]] == ["ours"]
    assert body["last_mutation_id"] == 2


def test_checkpoint_past_the_tombstone_horizon_is_410(
    settings: Settings, sync_client: SyncTestClient
) -> None:
    c = sync_client
    _results(c.push([c.put("k", {"v": 1})], wait=20))
    _, checkpoint = c.pull_all()
    short = create_app(dataclasses.replace(settings, tombstone_horizon_seconds=1)).test_client()
    time.sleep(1.2)
    reply = short.post(
        "/v1/sync/pull",
        json={"client_id": c.client_id, "scopes": {c.scope: checkpoint}},
        headers=c.headers,
    )
    assert reply.status_code == 410
    assert reply.get_json()["error"]["code"] == "resync_required"
    assert c.pull({c.scope: checkpoint}).status_code == 200  # within the normal horizon


def test_pull_of_several_scopes_in_one_request(new_client: Any, admin: Any) -> None:
    alice = new_client()
    team = f"team:{alice.user}"
    alice.http.put(
        f"/v1/admin/scopes/{team}/members/{alice.user}", json={"role": "writer"}, headers=admin
    )
    own = alice.put("mine", {"v": 1})
    shared = alice.put("ours", {"v": 2})
    shared["scope"] = team
    _results(alice.push([own, shared], wait=20))
    body = alice.pull({alice.scope: None, team: None}, collections=["notes"]).get_json()
    assert [c["key"] for c in body["scopes"][alice.scope]["changes"]] == ["mine"]
    assert [c["key"] for c in body["scopes"][team]["changes"]] == ["ours"]
    assert body["last_mutation_id"] == 2


def test_custom_strategy_adds_increments_from_several_clients(
    new_client: Any, admin: dict[str, str]
) -> None:
    alice, bob = new_client(), new_client()
    scope = f"team:{alice.user}"
    for member in (alice, bob):
        alice.http.put(
            f"/v1/admin/scopes/{scope}/members/{member.user}",
            json={"role": "writer"},
            headers=admin,
        )
        member.scope = scope
    _results(alice.push([alice.put("likes", {"delta": 2}, "counters")], wait=20))
    _results(bob.push([bob.put("likes", {"delta": 3}, "counters")], wait=20))
    below = _results(alice.push([alice.put("likes", {"delta": -9}, "counters")], wait=20))
    assert below[0] == {"id": 2, "status": "rejected", "reason": "below_zero", "version": 2}
    records, _ = bob.pull_all(scope)
    assert records[("counters", "likes")]["value"] == {"total": 5}
