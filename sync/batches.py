"""Sync batches: accepting a client's batch, and applying it exactly once, in order (G1, G2).

A batch is stored in MongoDB when the API accepts it; the queue message carries only its id.
`apply_batch` may run any number of times for one batch (redelivery, resubmission, a worker
killed between any two steps). It holds the client's lease and the locks of the batch's scopes,
then moves through steps each of which is safe to repeat:

1. claim: status `applying`, and `start_ledger`, the client's last applied id when this batch
   first ran (ids at or below it are `duplicate`);
2. resolve every new mutation against the records and commit each scope (`sync.scopelog`);
   a mutation already in a record's `writers` is not applied again;
3. store the per-mutation results on the batch;
4. advance the client's ledger (`last_mutation_id`);
5. status `applied`.
A rerun after a crash in step 2 re-resolves (lww is idempotent; other strategies find their
mutation in `writers`); after step 3 it reuses the stored results.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure
from redis import Redis

from sync import membership
from sync.collections import CollectionRegistry
from sync.conflicts import RecordState, Rejection, asked, load_resolver, resolve
from sync.hlc import too_far_ahead
from sync.leases import LeaseLost, LeaseUnavailable, ensure_held, held, refresh, take_fence
from sync.live import announce, announce_final
from sync.scopelog import ScopeWriter, doc_from_state, record_id, state_from_doc

BATCHES = "sync_batches"
CLIENTS = "sync_clients"
QUEUED, APPLYING, APPLIED, FAILED = "queued", "applying", "applied", "failed"
FINAL_STATUSES = (APPLIED, FAILED)


class ClientOwnedByAnotherUser(Exception):
    """The client_id is already registered to a different user."""


class GapPending(Exception):
    """The batch's first new mutation is not the next one, and no stored batch holds the ids
    before it: they have not arrived yet. Look again after `retry_in` seconds, when the gap
    timeout has run out (the batch then fails `gap` unless they came)."""

    def __init__(self, message: str, retry_in: float) -> None:
        super().__init__(message)
        self.retry_in = retry_in


class WaitingForPredecessor(Exception):
    """The ids before this batch are in a stored batch not applied yet. The worker that applies
    that batch goes on with this one (`sync.chain`), so nothing needs to look again."""


@dataclass(frozen=True)
class EngineConfig:
    collections: CollectionRegistry
    max_clock_skew_seconds: int = 300
    gap_timeout_seconds: int = 600
    lock_ttl_seconds: float = 30.0
    lock_wait_seconds: float = 2.0


def client_owner(db: Database, client_id: str) -> str | None:
    doc = db[CLIENTS].find_one({"_id": client_id}, {"user": 1})
    return None if doc is None else doc["user"]


def claim_client(db: Database, client_id: str, user: str) -> None:
    """Bind `client_id` to `user` on first use; refuse it to any other user afterwards."""
    # Two first pushes may race to insert; the loser's DuplicateKeyError changes nothing.
    with contextlib.suppress(DuplicateKeyError):
        db[CLIENTS].update_one(
            {"_id": client_id},
            {"$setOnInsert": {"user": user, "last_mutation_id": 0}},
            upsert=True,
        )
    if client_owner(db, client_id) != user:
        raise ClientOwnedByAnotherUser(client_id)


def unapplied_from(db: Database, client_id: str, up_to: int) -> list[dict[str, Any]]:
    """The client's batches not yet final whose first id is at most `up_to`, oldest first
    (`_id`, `created_at` and the mutation ids): the batch holding `up_to` if stored, and resends
    of ids already applied. Few, however deep the client's backlog.

    One query per status on the (client_id, status, first_id) index: SecantusDB 0.7.0b3 serves
    a `status` `$in` by scanning the collection, and an index match costs a document fetch even
    under a limit, so the `first_id` range keeps it to the head of the client's backlog
    (docs/embedded-store.md)."""
    found = [
        doc
        for status in (QUEUED, APPLYING)
        for doc in db[BATCHES].find(
            {"client_id": client_id, "status": status, "first_id": {"$lte": up_to}},
            {"created_at": 1, "mutations.id": 1},
        )
    ]
    return sorted(found, key=lambda doc: doc["created_at"])


def _next_is_pending(db: Database, client_id: str, next_id: int) -> bool:
    """Whether mutation `next_id` of the client is in a stored batch not yet final."""
    return any(
        any(m["id"] == next_id for m in doc["mutations"])
        for doc in unapplied_from(db, client_id, next_id)
    )


def submit_batch(
    db: Database,
    *,
    batch_id: str,
    user: str,
    client_id: str,
    mutations: Sequence[dict[str, Any]],
    now: datetime | None = None,
) -> dict[str, Any]:
    """Store a validated batch as `queued`; the caller then publishes its id."""
    claim_client(db, client_id, user)
    now = now or datetime.now(UTC)
    doc = {
        "_id": batch_id,
        "user": user,
        "client_id": client_id,
        "status": QUEUED,
        "mutations": list(mutations),
        "first_id": min(m["id"] for m in mutations),
        "results": [],
        "last_mutation_id": None,
        "created_at": now,
        "updated_at": now,
    }
    db[BATCHES].insert_one(doc)
    return doc


def forget_batch(db: Database, batch_id: str) -> None:
    """Remove a batch that could not be queued, so nothing refers to it."""
    db[BATCHES].delete_one({"_id": batch_id})


def batch_status(db: Database, batch_id: str, user: str) -> dict[str, Any] | None:
    """The batch as its submitter sees it; None for unknown ids and other users' batches."""
    doc = db[BATCHES].find_one({"_id": batch_id})
    return None if doc is None or doc["user"] != user else status_view(doc)


def status_view(doc: dict[str, Any]) -> dict[str, Any]:
    final = doc["status"] in FINAL_STATUSES
    view = {
        "batch_id": doc["_id"],
        "status": doc["status"],
        "last_mutation_id": doc.get("last_mutation_id"),
        "results": doc.get("results", []) if final else [],
    }
    if doc["status"] == FAILED:
        view["reason"] = doc.get("reason", "failed")  # `gap`, or `undeliverable` for poison
    return view


# -- applying one mutation ------------------------------------------------------------------


def _rejected(mutation: dict[str, Any], reason: str, **extra: Any) -> dict[str, Any]:
    return {"id": mutation["id"], "status": "rejected", "reason": reason, **extra}


def _relog(writer: ScopeWriter, mutation: dict[str, Any]) -> None:
    """Give the record a new seq, so the client that wrote it locally pulls the server's truth."""
    rid = record_id(mutation["scope"], mutation["collection"], mutation["key"])
    doc = writer.record(rid)
    if doc is None:  # never existed here: a tombstone tells the client to drop its local copy
        doc = doc_from_state(
            mutation["scope"], mutation["collection"], mutation["key"], state_from_doc(None), []
        )
    writer.stage(doc)


def _validation_errors(config: EngineConfig, mutation: dict[str, Any]) -> Any:
    spec = config.collections.get(mutation["collection"])
    if spec is None or spec.schema is None or mutation["op"] == "delete":
        return None
    if mutation["op"] == "put":
        return spec.validation_errors(mutation["value"])
    present = {k: v for k, v in mutation["value"].items() if v is not None}
    return spec.schema().validate(present, partial=True) or None


def apply_mutation(
    writer: ScopeWriter,
    may_write: bool,
    client_id: str,
    mutation: dict[str, Any],
    config: EngineConfig,
    now_ms: int,
) -> dict[str, Any]:
    """Resolve one mutation against its record and stage the result; return its result entry."""
    if not may_write:
        return _rejected(mutation, "forbidden")  # membership was lost after the push
    spec = config.collections.get(mutation["collection"])
    if spec is None:
        return _rejected(mutation, "unknown_collection")
    if too_far_ahead(mutation["hlc"], now_ms, config.max_clock_skew_seconds):
        _relog(writer, mutation)
        return _rejected(mutation, "clock_skew")
    errors = _validation_errors(config, mutation)
    if errors:
        _relog(writer, mutation)
        return _rejected(mutation, "validation", errors=errors)

    rid = record_id(mutation["scope"], mutation["collection"], mutation["key"])
    doc = writer.record(rid)
    state = state_from_doc(doc)
    ref = f"{client_id}:{mutation['id']}"
    writers = list(doc.get("writers", [])) if doc else []
    if ref in writers:  # applied by an earlier run of this batch that did not finish
        return {"id": mutation["id"], "status": "applied", "version": state.version}

    resolver = _resolver(spec.resolver) if spec.resolver else None
    outcome = resolve(spec.strategy, state, mutation, resolver)
    if isinstance(outcome, Rejection):
        _relog(writer, mutation)
        extra: dict[str, Any] = {"version": state.version}
        if outcome.errors is not None:
            extra["errors"] = outcome.errors
        if outcome.reason == "conflict":
            extra["current"] = copy.deepcopy(state.snapshot())
        return _rejected(mutation, outcome.reason, **extra)
    if outcome is None:
        # Changed nothing (superseded by newer clocks, or already so): the record is re-stamped
        # all the same, so a client that skipped the server's version of it in an earlier page
        # (it had this write pending) gets it again on its next pull (G4).
        _relog(writer, mutation)
        return _applied(mutation, state, asked(state, mutation))
    writer.stage(
        doc_from_state(
            mutation["scope"], mutation["collection"], mutation["key"], outcome, [*writers, ref]
        )
    )
    return _applied(mutation, outcome, asked(state, mutation))


def _applied(
    mutation: dict[str, Any], result: RecordState, wanted: dict[str, Any] | None
) -> dict[str, Any]:
    """An `applied` result: the record's version, and the record itself when it is not what
    the mutation asked for (fields kept by newer clocks, a resolver's rewrite)."""
    entry: dict[str, Any] = {"id": mutation["id"], "status": "applied", "version": result.version}
    if result.snapshot() != wanted:
        entry["current"] = result.snapshot()
    return entry


@functools.cache
def _resolver(dotted: str) -> Any:
    return load_resolver(dotted)


# -- applying a batch ---------------------------------------------------------------------


def _finish(db: Database, batch: dict[str, Any], **fields: Any) -> dict[str, Any]:
    fields["updated_at"] = datetime.now(UTC)
    # Never over a final status: a worker that lost its lease may finish late.
    db[BATCHES].update_one(
        {"_id": batch["_id"], "status": {"$nin": list(FINAL_STATUSES)}}, {"$set": fields}
    )
    return status_view({**batch, **fields})


def _resolve_and_commit(
    db: Database,
    redis: Redis,
    batch: dict[str, Any],
    start: int,
    config: EngineConfig,
    now: datetime,
    locks: list[Any],
    hook: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Resolve the batch's new mutations in id order and commit every scope they touch."""
    mutations, client_id = batch["mutations"], batch["client_id"]
    scopes = sorted({m["scope"] for m in mutations})
    writers = {scope: ScopeWriter(db, scope) for scope in scopes}
    for scope, writer in writers.items():
        writer.prefetch(
            [
                record_id(scope, m["collection"], m["key"])
                for m in mutations
                if m["scope"] == scope and m["id"] > start
            ]
        )
    # Membership is read when the batch is applied: it may have changed since the push.
    allowed = {scope: membership.can_write(db, batch["user"], scope) for scope in scopes}
    now_ms = int(now.timestamp() * 1000)
    results = []
    refreshed = time.monotonic()
    for m in mutations:
        if m["id"] <= start:
            results.append({"id": m["id"], "status": "duplicate"})
            continue
        writer = writers[m["scope"]]
        results.append(apply_mutation(writer, allowed[m["scope"]], client_id, m, config, now_ms))
        if time.monotonic() - refreshed > config.lock_ttl_seconds / 3:
            refresh(locks)  # a long batch keeps its locks; a dead worker's expire
            refreshed = time.monotonic()
    ensure_held(locks)
    hook("before_commit")
    for scope, writer in writers.items():
        if writer.commit(hook):
            announce(redis, scope, writer.committed_seq)  # wakes the live pulls of the scope
    return results


def apply_batch(
    db: Database,
    redis: Redis,
    batch_id: str,
    config: EngineConfig,
    now: datetime | None = None,
    crash_point: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Apply a stored batch and return its final status. Safe to run again for the same id.

    Raises `WaitingForPredecessor` while the ids before it are in a stored batch not applied
    yet (that batch's worker goes on with this one), `GapPending` while they have not arrived
    (look again later), and `sync.leases.LeaseUnavailable` when another worker holds a lock.
    """
    batch = db[BATCHES].find_one({"_id": batch_id})
    if batch is None:
        raise LookupError(f"batch {batch_id} does not exist")
    if batch["status"] in FINAL_STATUSES:
        return status_view(batch)  # a duplicate delivery
    client_id, mutations = batch["client_id"], batch["mutations"]
    scopes = sorted({m["scope"] for m in mutations})
    lease = f"client:{client_id}"
    names = [lease] + [f"scope:{scope}" for scope in scopes]
    try:
        with held(redis, names, config.lock_ttl_seconds, config.lock_wait_seconds) as locks:
            status = _apply_held(db, redis, batch_id, batch, config, now, locks, crash_point)
        announce_final(redis, batch_id)  # wakes the push waiting for it (`Prefer: wait`)
        return status
    except LeaseUnavailable as exc:
        # The client's lease is busy. If an earlier stored batch must go first, its worker (the
        # likely holder) goes on with this one: nothing to retry.
        if exc.args[0] == lease and behind_a_pending_batch(db, client_id, mutations):
            raise WaitingForPredecessor(f"client {client_id}: busy with an earlier batch") from None
        raise


def behind_a_pending_batch(db: Database, client_id: str, mutations: Sequence[dict]) -> bool:
    """Whether the client's next id is not in these mutations but in a stored batch not yet
    applied (so that batch goes first, and its worker goes on with these)."""
    last = ledger(db, client_id)
    return mutations[0]["id"] > last + 1 and _next_is_pending(db, client_id, last + 1)


def seen(db: Database, batch_id: str) -> None:
    """A worker took a message for the batch (housekeeping tells a live message from a lost
    one by this)."""
    db[BATCHES].update_one({"_id": batch_id}, {"$set": {"seen_at": datetime.now(UTC)}})


def ledger(db: Database, client_id: str) -> int:
    """The client's last applied mutation id (0 before its first)."""
    doc = db[CLIENTS].find_one({"_id": client_id}, {"last_mutation_id": 1}) or {}
    return int(doc.get("last_mutation_id", 0))


def _apply_held(
    db: Database,
    redis: Redis,
    batch_id: str,
    batch: dict[str, Any],
    config: EngineConfig,
    now: datetime | None,
    locks: list[Any],
    crash_point: Callable[[str], None] | None,
) -> dict[str, Any]:
    """`apply_batch` once its client lease and scope locks are held."""
    hook = crash_point or (lambda _step: None)
    batch = db[BATCHES].find_one({"_id": batch_id}) or batch
    if batch["status"] in FINAL_STATUSES:
        return status_view(batch)
    client_id, mutations = batch["client_id"], batch["mutations"]
    now = now or datetime.now(UTC)
    # The lease's fencing token: the ledger only moves while no newer holder took the client.
    lease = take_fence(db[CLIENTS], client_id) or {"fence": None}
    last = int(lease.get("last_mutation_id", 0))
    start = batch.get("start_ledger")
    if start is None:
        fresh = [m["id"] for m in mutations if m["id"] > last]
        if fresh and fresh[0] != last + 1:
            if _next_is_pending(db, client_id, last + 1):
                # Not a gap: the missing ids are in a stored batch a backlog has not applied
                # yet. Wait for it, however long.
                raise WaitingForPredecessor(
                    f"client {client_id} is at {last}; {last + 1} is stored"
                )
            remaining = config.gap_timeout_seconds - (now - batch["created_at"]).total_seconds()
            if remaining > 0:
                raise GapPending(
                    f"client {client_id} is at {last}, batch starts at {fresh[0]}", remaining
                )
            results = [
                {"id": m["id"], "status": "duplicate"} if m["id"] <= last else _rejected(m, "gap")
                for m in mutations
            ]
            return _finish(
                db, batch, status=FAILED, reason="gap", results=results, last_mutation_id=last
            )
        start = last
        claimed = db[BATCHES].update_one(
            {"_id": batch_id, "status": {"$in": [QUEUED, APPLYING]}},
            {"$set": {"status": APPLYING, "start_ledger": start, "updated_at": now}},
        )
        if claimed.matched_count == 0:  # finished meanwhile by a newer holder of the lease
            raise LeaseLost(f"client:{client_id} (batch {batch_id} finished elsewhere)")
        hook("after_claim")

    results = batch.get("staged_results")
    if results is None:
        results = _resolve_and_commit(db, redis, batch, start, config, now, locks, hook)
        db[BATCHES].update_one({"_id": batch_id}, {"$set": {"staged_results": results}})
        hook("after_results")

    newest = max([last, *(m["id"] for m in mutations)])
    if newest > last:
        ensure_held(locks)
        moved = db[CLIENTS].update_one(
            {"_id": client_id, "fence": lease["fence"]}, {"$set": {"last_mutation_id": newest}}
        )
        if moved.matched_count == 0:
            raise LeaseLost(f"client:{client_id} (taken by a newer holder)")
        hook("after_ledger")
    status = _finish(db, batch, status=APPLIED, results=results, last_mutation_id=newest)
    hook("after_final")
    return status


def ensure_indexes(db: Database) -> None:
    # Housekeeping finds stuck and expired batches by status and age.
    db[BATCHES].create_index([("status", ASCENDING), ("created_at", ASCENDING)], name="status_age")
    # A client's next stored batch (sync.chain) and the gap check look batches up by client,
    # status and first id (`unapplied_from`).
    db[BATCHES].create_index(
        [("client_id", ASCENDING), ("status", ASCENDING), ("first_id", ASCENDING)],
        name="client_status_first",
    )
    with contextlib.suppress(OperationFailure):
        db[BATCHES].drop_index("client_status")  # replaced by client_status_first
    # Batches stored before `first_id` existed (an upgrade with a backlog): give them one.
    for status in (QUEUED, APPLYING):
        for doc in db[BATCHES].find({"status": status, "first_id": None}, {"mutations.id": 1}):
            first = min(m["id"] for m in doc["mutations"])
            db[BATCHES].update_one({"_id": doc["_id"]}, {"$set": {"first_id": first}})
