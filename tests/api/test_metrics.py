"""/metrics serves Prometheus text with the series ops rely on."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.usefixtures("worker")  # a worker declares every queue when it starts
def test_metrics_show_requests_batches_queues_and_lag(sync_client: Any, client: Any) -> None:
    sync_client.push([sync_client.put("m", {"v": 1})])
    reply = client.get("/metrics")
    assert reply.status_code == 200
    assert reply.mimetype == "text/plain"
    text = reply.get_data(as_text=True)
    assert 'offgrid_http_requests_total{method="POST",route="/v1/sync/push",status="202"}' in text
    assert "offgrid_http_request_duration_seconds_bucket" in text
    assert "offgrid_sync_batches_accepted_total" in text
    for queue in ("sync", "push", "maintenance", "offgrid.dead_letter"):
        assert f'offgrid_queue_depth{{queue="{queue}"}}' in text
    assert "offgrid_sync_lag_seconds" in text


@pytest.mark.usefixtures("worker")
def test_worker_task_metrics_reach_the_shared_metrics_endpoint(
    sync_client: Any, client: Any
) -> None:
    assert sync_client.push([sync_client.put("w", {"v": 1})], wait=20).status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert 'offgrid_tasks_total{outcome="success",queue="sync",task="sync.apply_batch"}' in text
    assert 'offgrid_task_duration_seconds_count{queue="sync",task="sync.apply_batch"}' in text


def test_a_delayed_retrys_queue_is_its_queue_not_the_delay_routing_key() -> None:
    from workers.metrics import queue_of

    delayed = ".".join("0" * 24 + "0101") + ".sync"  # what native delayed delivery routes by
    assert queue_of(delayed) == "sync"
    assert queue_of("push") == "push"
    assert queue_of(None) == "unknown"


def test_every_registered_task_has_its_series_primed() -> None:
    import tasks.maintenance
    import tasks.push
    import tasks.sync  # noqa: F401 - registers the tasks
    from workers.celery_app import celery_app
    from workers.metrics import KNOWN_TASKS

    registered = {name for name in celery_app.tasks if not name.startswith("celery.")}
    assert registered == set(KNOWN_TASKS)
    assert {queue for queue in KNOWN_TASKS.values()} == {"sync", "push", "maintenance"}
