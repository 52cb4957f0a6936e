"""Live pulls held by the real server (gunicorn's gevent workers, gunicorn.conf.py): hundreds of
them do not hold up normal requests, a commit wakes them all, and SIGTERM answers them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from bench.harness import wait_ready
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("worker")
PORT = 18079
BASE = f"http://127.0.0.1:{PORT}"


@pytest.fixture
def server(test_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{PORT}", "--workers", "1",
         "api:create_app()"],
        cwd=ROOT, env={**os.environ, **test_env}, stdout=(tmp_path / "web.log").open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    wait_ready(BASE, proc)
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _headers(test_env: dict[str, str], user: str) -> dict[str, str]:
    token = jwt.encode(
        {"sub": user, "exp": int(time.time()) + 600}, test_env["JWT_SECRET"], algorithm="HS256"
    )
    return {"Authorization": f"Bearer {token}"}


def _checkpoint(headers: dict[str, str], client_id: str, scope: str) -> str:
    reply = httpx.post(
        f"{BASE}/v1/sync/pull", json={"client_id": client_id, "scopes": {scope: None}},
        headers=headers, timeout=10,
    )  # fmt: skip
    return str(reply.json()["scopes"][scope]["checkpoint"])


def _hold(headers: dict[str, str], client_id: str, scope: str, cp: str, wait: int) -> Any:
    return httpx.post(
        f"{BASE}/v1/sync/pull",
        json={"client_id": client_id, "scopes": {scope: cp}},
        headers={**headers, "Prefer": f"wait={wait}"},
        timeout=wait + 30,
    )


def _put(key: str, client_id: str, scope: str, n: int) -> dict[str, Any]:
    hlc = f"{int(time.time() * 1000):013d}-{n:04x}-{client_id}"
    return {"id": n, "scope": scope, "collection": "notes", "key": key, "op": "put",
            "value": {"v": n}, "hlc": hlc}  # fmt: skip


def test_hundreds_of_held_pulls_leave_normal_requests_free_and_all_wake(
    server: subprocess.Popen, test_env: dict[str, str]
) -> None:
    user = f"live-{time.time_ns()}"
    headers, scope = _headers(test_env, user), f"user:{user}"
    cp = _checkpoint(headers, "live-reader-0", scope)
    with ThreadPoolExecutor(200) as pool:
        held = [
            pool.submit(_hold, headers, f"live-reader-{i % 20}", scope, cp, 40) for i in range(200)
        ]
        time.sleep(3)  # they are all waiting now
        assert not any(f.done() for f in held)
        # A normal round trip meanwhile, on the same single worker process.
        other, mine = _headers(test_env, f"{user}-other"), f"user:{user}-other"
        pushed = httpx.post(
            f"{BASE}/v1/sync/push",
            json={"client_id": "live-other-1", "mutations": [_put("x", "live-other-1", mine, 1)]},
            headers={**other, "Prefer": "wait=20"}, timeout=30,
        )  # fmt: skip
        assert pushed.status_code == 200 and pushed.json()["status"] == "applied"
        assert not any(f.done() for f in held), "the held pulls did not wait"
        # One commit in their scope wakes every one of them, with the change.
        news = _put("news", "live-writer-1", scope, 1)
        writer = httpx.post(
            f"{BASE}/v1/sync/push",
            json={"client_id": "live-writer-1", "mutations": [news]},
            headers={**headers, "Prefer": "wait=20"}, timeout=30,
        )  # fmt: skip
        assert writer.json()["status"] == "applied"
        replies = [f.result(timeout=60) for f in held]
    assert {r.status_code for r in replies} == {200}
    assert all(
        [x["key"] for x in r.json()["scopes"][scope]["changes"]] == ["news"] for r in replies
    )


def test_sigterm_answers_held_pulls_before_the_server_exits(
    server: subprocess.Popen, test_env: dict[str, str]
) -> None:
    user = f"live-{time.time_ns()}"
    headers, scope = _headers(test_env, user), f"user:{user}"
    cp = _checkpoint(headers, "live-reader-0", scope)
    with ThreadPoolExecutor(5) as pool:
        held = [pool.submit(_hold, headers, f"live-reader-{i}", scope, cp, 60) for i in range(5)]
        time.sleep(2)
        started = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)  # the master, as a deploy does
        replies = [f.result(timeout=60) for f in held]
        assert server.wait(30) == 0
    assert time.monotonic() - started < 20  # answered at once, not after their 60 s
    assert {r.status_code for r in replies} == {200}
    assert all(r.json()["scopes"][scope]["changes"] == [] for r in replies)
