"""The Celery app the worker, beat and flower processes load (`-A workers.celery_app`).

Importing it needs no environment (task modules, tests and tools can import it): the app reads
its settings when it is first configured, that is when a process first uses it (Celery's
`on_configure`); a bad setting then stops the process.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
from typing import Any

from celery import Celery
from celery.signals import (
    beat_init,
    setup_logging,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutting_down,
)
from redis import Redis

from config import Settings, load_settings
from config.logs import configure_logging, request_id
from push.pushes import ensure_push_indexes
from sync.batches import EngineConfig
from sync.collections import CollectionRegistry, CollectionsUnavailable, load_collections
from sync.indexes import ensure_indexes
from sync.store import MongoHandle
from workers import metrics as _task_metrics  # noqa: F401 - connects the task metric signals
from workers.factory import DEAD_LETTER_QUEUE, TASK_MODULES, configure


class _ConfiguredOnUse(Celery):
    def on_configure(self) -> None:
        """Celery calls this when the app is first configured. (A handler of the
        `on_configure` signal would not do: Celery logs and swallows a handler's error, and the
        app would go on with its defaults.)"""
        configure(self, settings())


celery_app = _ConfiguredOnUse("offgrid", include=TASK_MODULES)


# Set in the main process when a warm shutdown begins; shared with the forked pool processes,
# so a task running a chain of batches stops taking new ones (sync.chain).
_shutting_down = multiprocessing.RawValue("b", 0)


def shutting_down() -> bool:
    """Whether this worker was told to stop (SIGTERM): finish the work in hand, start none."""
    return bool(_shutting_down.value)


@worker_shutting_down.connect
def _mark_shutting_down(**_: Any) -> None:
    _shutting_down.value = 1


@functools.cache
def collections() -> CollectionRegistry:
    """The declared collections, loaded once per process."""
    return load_collections(settings().collections_module)


@functools.cache
def settings() -> Settings:
    """The settings of this process, read from the environment once."""
    return load_settings()


@functools.cache
def engine_config() -> EngineConfig:
    s = settings()
    return EngineConfig(
        collections=collections(),
        max_clock_skew_seconds=s.max_clock_skew_seconds,
        gap_timeout_seconds=s.gap_timeout_seconds,
        lock_ttl_seconds=float(s.lock_ttl_seconds),
    )


@functools.cache
def redis_client() -> Redis:
    # redis-py's pool notices a fork and reconnects in the child, so one client is enough.
    return Redis.from_url(settings().redis_url, socket_timeout=10, socket_connect_timeout=5)


@functools.cache
def mongo() -> MongoHandle:
    """This process's database handle (it reconnects in a forked child)."""
    return MongoHandle(settings().mongodb_url, settings().mongodb_database)


@setup_logging.connect
def _json_logs(**_: Any) -> None:
    """Our JSON lines instead of Celery's own log format (connecting this replaces it)."""
    configure_logging(settings().log_level, settings().log_format)


@task_prerun.connect
def _adopt_request_id(task: Any = None, **_: Any) -> None:
    request_id.set(getattr(task.request, "request_id", None) if task is not None else None)


@worker_init.connect
def _prepare_broker_and_database(**_: Any) -> None:
    """Declare the dead-letter route and the indexes once, before any task runs."""
    with celery_app.connection_for_write() as conn:
        DEAD_LETTER_QUEUE.bind(conn.default_channel).declare()
        for queue in celery_app.conf.task_queues:
            queue.bind(conn.default_channel).declare()
    _require_collections()  # a worker that cannot apply batches must not consume them
    ensure_indexes(mongo().db)
    ensure_push_indexes(mongo().db)
    mongo().close()  # the parent must not hand a connected client to its forked children


def _require_collections() -> None:
    try:
        collections()
    except CollectionsUnavailable as exc:
        logging.getLogger(__name__).critical("%s", exc)
        raise SystemExit(f"offgrid: {exc}") from None  # Celery's signals re-raise only this


@beat_init.connect
def _check_beat(**_: Any) -> None:
    _require_collections()


@worker_process_init.connect
def _connect_per_process(**_: Any) -> None:
    mongo().client  # noqa: B018 - open this child's own client before the first task


@worker_process_shutdown.connect
def _disconnect_per_process(**_: Any) -> None:
    mongo().close()
