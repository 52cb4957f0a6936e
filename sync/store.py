"""MongoDB access for the sync domain: one client per process, collection names, indexes.

pymongo's MongoClient is not fork-safe, so `MongoHandle` creates its client lazily in the
process that uses it and recreates it after a fork (gunicorn and Celery prefork both fork).
The design uses no multi-document transactions, change streams, TTL or partial indexes, so it
runs unchanged on MongoDB >= 6 and on the embedded SecantusDB (docs/embedded-store.md).
"""

from __future__ import annotations

import contextlib
import os
import threading

from pymongo import ASCENDING, MongoClient
from pymongo.database import Database
from pymongo.errors import OperationFailure

from sync.batches import APPLYING, BATCHES, QUEUED
from sync.membership import MEMBERS
from sync.scopelog import RECORDS


class MongoHandle:
    """A process-local MongoClient, created on first use and again after a fork."""

    def __init__(self, url: str, database: str) -> None:
        self._url = url
        self._database = database
        self._client: MongoClient | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> MongoClient:
        pid = os.getpid()
        if self._client is None or self._pid != pid:
            with self._lock:
                if self._client is None or self._pid != pid:
                    self._client = MongoClient(
                        self._url,
                        serverSelectionTimeoutMS=5000,
                        connectTimeoutMS=5000,
                        tz_aware=True,  # every datetime read is aware (UTC): no naive fallbacks
                        appname=f"offgrid-{pid}",
                    )
                    self._pid = pid
        return self._client

    @property
    def db(self) -> Database:
        return self.client[self._database]

    def close(self) -> None:
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None
        self._pid = None


def ensure_indexes(db: Database) -> None:
    """Create the indexes the sync queries rely on (MongoDB and SecantusDB serve them)."""
    # Pull and crash recovery walk a scope in server order: (scope, seq) serves filter and sort.
    db[RECORDS].create_index([("scope", ASCENDING), ("seq", ASCENDING)], name="scope_seq")
    db[MEMBERS].create_index([("scope", ASCENDING), ("user", ASCENDING)], name="scope_user")
    # Housekeeping finds stuck and expired batches by status and age.
    db[BATCHES].create_index([("status", ASCENDING), ("created_at", ASCENDING)], name="status_age")
    # A client's next stored batch (sync.chain) and the gap check look batches up by client,
    # status and first id (sync.batches.unapplied_from).
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
