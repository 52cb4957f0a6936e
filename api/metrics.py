"""Prometheus metrics of the API (SPEC §6), correct under gunicorn's several processes.

With `PROMETHEUS_MULTIPROC_DIR` set (./dev and the Procfile set it), each process writes its
samples to files there and `/metrics` merges all of them; without it, the process's own
registry is served. Queue depths and the sync lag are read when `/metrics` is scraped.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from amqp.exceptions import ChannelError
from flask import Flask, Response, g, request
from kombu.exceptions import KombuError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.resources import resources
from push import metrics as push_metrics
from push.base import OUTCOMES
from push.devices import PLATFORMS
from sync.batches import APPLYING, BATCHES, QUEUED
from workers import metrics as task_metrics
from workers.factory import DEAD_LETTER_QUEUE
from workers.queues import QUEUE_NAMES

REQUESTS = Counter(
    "offgrid_http_requests_total",
    "HTTP requests by route and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "offgrid_http_request_duration_seconds",
    "HTTP request latency by route",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LIVE_HELD = Gauge(
    "offgrid_live_pulls_held",
    "Live pulls (Prefer: wait) waiting for a commit",
    multiprocess_mode="livesum",
)
LIVE_WAKEUPS = Counter("offgrid_live_wakeups_total", "Live pulls answered, by why", ["reason"])
LIVE_LATENCY = Histogram(
    "offgrid_live_commit_to_reply_seconds",
    "From a commit's announcement to the reply of a live pull it woke",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCHES_ACCEPTED = Counter("offgrid_sync_batches_accepted_total", "Sync batches queued (202)")
MUTATIONS_ACCEPTED = Counter("offgrid_sync_mutations_accepted_total", "Mutations in queued batches")


class BrokerAndSyncCollector(Collector):
    """Read at scrape time: queue depths (passive declare) and the age of the oldest batch."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:
        depth = GaugeMetricFamily(
            "offgrid_queue_depth", "Messages ready in each RabbitMQ queue", labels=["queue"]
        )
        celery = resources(self.app).celery
        try:
            with celery.connection_for_write() as conn:
                for name in (*QUEUE_NAMES, DEAD_LETTER_QUEUE.name):
                    # A passive declare of a queue not created yet closes its channel: use one
                    # channel per queue and leave such a queue out.
                    channel = conn.channel()
                    try:
                        _, messages, _ = channel.queue_declare(queue=name, passive=True)
                        depth.add_metric([name], messages)
                    except ChannelError:
                        pass
                    finally:
                        with contextlib.suppress(Exception):
                            channel.close()
        except (OSError, KombuError):
            pass  # broker unreachable: /readyz says so; /metrics still answers
        yield depth

        lag = GaugeMetricFamily(
            "offgrid_sync_lag_seconds", "Age of the oldest batch not yet applied (0 when none)"
        )
        db = resources(self.app).mongo.db
        # One query per status: a `$in` is a collection scan on SecantusDB (sync.batches).
        found = [
            db[BATCHES].find_one({"status": status}, {"created_at": 1}, sort=[("created_at", 1)])
            for status in (QUEUED, APPLYING)
        ]
        oldest = min(
            (doc for doc in found if doc is not None),
            key=lambda doc: doc["created_at"],
            default=None,
        )
        if oldest is None:
            lag.add_metric([], 0.0)
        else:
            lag.add_metric([], (datetime.now(UTC) - oldest["created_at"]).total_seconds())
        yield lag


def metrics(scrape: CollectorRegistry) -> Response:
    """The process's (or every process's, in multiprocess mode) metrics, then what `scrape`
    collects at scrape time (queue depths, sync backlog)."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    output = generate_latest(registry)
    output += generate_latest(scrape)
    return Response(output, mimetype=CONTENT_TYPE_LATEST)


def prime_metrics(app: Flask) -> None:
    """Every family exists from start-up, at 0: each route's request series (status 200) and
    latency, each task's and each push outcome's (written by this process, summed with the
    workers' in multiprocess mode, so the zeros add nothing)."""
    for rule in app.url_map.iter_rules():
        if rule.rule in ("/metrics", "/static/<path:filename>"):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            REQUESTS.labels(method, rule.rule, "200")
            LATENCY.labels(method, rule.rule)
    for reason in ("commit", "timeout", "shutdown"):
        LIVE_WAKEUPS.labels(reason)
    task_metrics.prime()
    push_metrics.prime(PLATFORMS, OUTCOMES)


def register_metrics(app: Flask) -> None:
    prime_metrics(app)
    scrape = CollectorRegistry(auto_describe=True)
    scrape.register(BrokerAndSyncCollector(app))

    def metrics_view() -> Response:
        return metrics(scrape)

    app.add_url_rule("/metrics", "metrics", metrics_view)

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if rule != "/metrics":
            REQUESTS.labels(request.method, rule, str(response.status_code)).inc()
            started = g.get("request_started")
            if started is not None:
                LATENCY.labels(request.method, rule).observe(time.perf_counter() - started)
        return response
