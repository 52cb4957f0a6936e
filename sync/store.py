"""MongoDB access: one client per process. Each domain module owns its collections and their
indexes (`sync.indexes` creates the sync engine's).

pymongo's MongoClient is not fork-safe, so `MongoHandle` creates its client lazily in the
process that uses it and recreates it after a fork (gunicorn and Celery prefork both fork).
The design uses no multi-document transactions, change streams, TTL or partial indexes, so it
runs unchanged on MongoDB >= 6 and on the embedded SecantusDB (docs/embedded-store.md).
"""

from __future__ import annotations

import os
import threading

from pymongo import MongoClient
from pymongo.database import Database


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
