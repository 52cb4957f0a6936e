"""Worker metrics (SPEC §6): task durations, outcomes and retries by task and queue.

Samples go to PROMETHEUS_MULTIPROC_DIR (each prefork child writes its own files), so the
API's `/metrics` — which merges that directory — shows them when web and workers share it, as
under `./dev up`. A worker started with WORKER_METRICS_PORT also serves them itself.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from celery.signals import task_postrun, task_prerun, task_retry, worker_ready
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server

from workers import queues

TASKS = Counter(
    "offgrid_tasks_total", "Celery tasks finished, by outcome", ["task", "queue", "outcome"]
)
DURATION = Histogram(
    "offgrid_task_duration_seconds",
    "Celery task run time",
    ["task", "queue"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
_started: dict[str, float] = {}

# Every task and its queue, so their series exist at 0 from start-up (`prime`); a test checks
# this against the tasks Celery registers.
KNOWN_TASKS = {task.name: task.queue for task in queues.TASKS}


def prime() -> None:
    """Create each task's series at 0. In multiprocess mode a family is served only once some
    process wrote a sample, so without this a fresh stack's dashboards say "no data"."""
    for task, queue in KNOWN_TASKS.items():
        DURATION.labels(task, queue)
        for outcome in ("success", "failure", "retry"):
            TASKS.labels(task, queue, outcome)


# Celery's native delayed delivery routes a countdown message with 28 binary digits of its
# delay before the queue's routing key ("0.1.…1.sync"); the queue is what follows.
_DELAYED = re.compile(r"^(?:[01]\.){28}(?P<key>.+)$")


def queue_of(routing_key: str | None) -> str:
    if not routing_key:
        return "unknown"
    delayed = _DELAYED.match(routing_key)
    return delayed.group("key") if delayed else routing_key


def _queue(task: Any) -> str:
    info = getattr(task.request, "delivery_info", None) or {}
    return queue_of(info.get("routing_key"))


@task_prerun.connect
def _start(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()


@task_postrun.connect
def _finish(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    started = _started.pop(task_id or "", None)
    if task is None:
        return
    queue = _queue(task)
    if started is not None:
        DURATION.labels(task.name, queue).observe(time.perf_counter() - started)
    if state in ("SUCCESS", "FAILURE"):
        TASKS.labels(task.name, queue, state.lower()).inc()


@task_retry.connect
def _retry(sender: Any = None, **_: Any) -> None:
    if sender is not None:
        TASKS.labels(sender.name, _queue(sender), "retry").inc()


@worker_ready.connect
def _serve(**_: Any) -> None:
    port = os.environ.get("WORKER_METRICS_PORT", "").strip()
    if not port:
        return
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    start_http_server(
        int(port), addr=os.environ.get("WORKER_METRICS_ADDRESS", "127.0.0.1"), registry=registry
    )
