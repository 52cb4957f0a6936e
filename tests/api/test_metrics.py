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
