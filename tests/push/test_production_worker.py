"""A worker as production runs it: without OFFGRID_FAULT_INJECTION, so without the crash hook
the rest of the suite arms. Its pushes must go out like the suite's worker's."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from config import Settings
from tests.conftest import WorkerProcess, _consumer_paused
from tests.push_client import register, send_and_wait


@pytest.fixture
def production_worker(
    test_env: dict[str, str], settings: Settings, worker: WorkerProcess
) -> Iterator[WorkerProcess]:
    env = {k: v for k, v in test_env.items() if k != "OFFGRID_FAULT_INJECTION"}
    with _consumer_paused(settings, worker, "push"):
        plain = WorkerProcess({**env, "OFFGRID_FAULT_INJECTION": "0"}, settings, "production")
        try:
            yield plain
        finally:
            plain.stop()


@pytest.mark.usefixtures("production_worker")
def test_a_worker_without_fault_injection_delivers_a_push(
    client: Any, admin: dict[str, str], make_token: Any, apns_fake: Any
) -> None:
    user = f"prod-{uuid.uuid4().hex[:8]}"
    tokens = [secrets.token_hex(32) for _ in range(3)]
    for token in tokens:
        register(client, make_token, user, token, "ios")
    body = {"audience": {"users": [user]}, "notification": {"title": "Hi", "body": "there"}}
    status = send_and_wait(client, admin, body)
    assert status["counts"]["sent"] == 3, status
    assert [len(apns_fake.received.get(token, [])) for token in tokens] == [1, 1, 1]
