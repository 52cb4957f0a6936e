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


def test_a_held_pull_ends_on_its_deadline_its_tokens_expiry_and_a_lost_membership(
    server: subprocess.Popen, test_env: dict[str, str], admin: dict[str, str]
) -> None:
    """Through the real server, where held pulls are parked (api/parking.py): each way a held
    pull ends without news gives the reply a pull would."""
    stamp = time.time_ns()
    quiet = _headers(test_env, f"quiet-{stamp}")
    quiet_scope = f"user:quiet-{stamp}"
    quiet_cp = _checkpoint(quiet, "quiet-reader", quiet_scope)
    lapsing_user = f"lapsing-{stamp}"
    lapsing = {  # expired 25 s ago: accepted within the 30 s leeway, for 5 s more
        "Authorization": "Bearer "
        + jwt.encode(
            {"sub": lapsing_user, "exp": int(time.time()) - 25},
            test_env["JWT_SECRET"],
            algorithm="HS256",
        )
    }
    lapsing_cp = _checkpoint(lapsing, "lapsing-reader", f"user:{lapsing_user}")
    team, member = f"team:live{stamp}", f"member-{stamp}"
    url = f"{BASE}/v1/admin/scopes/{team}/members/{member}"
    assert httpx.put(url, json={"role": "reader"}, headers=admin).status_code == 201
    leaving = _headers(test_env, member)
    team_cp = _checkpoint(leaving, "member-reader", team)
    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        ends_quietly = pool.submit(_hold, quiet, "quiet-reader", quiet_scope, quiet_cp, 3)
        lapses = pool.submit(
            _hold, lapsing, "lapsing-reader", f"user:{lapsing_user}", lapsing_cp, 30
        )
        loses_scope = pool.submit(_hold, leaving, "member-reader", team, team_cp, 4)
        time.sleep(1)
        assert httpx.delete(url, headers=admin).status_code == 204
        quietly, lapsed, lost = (f.result(timeout=60) for f in (ends_quietly, lapses, loses_scope))
    assert time.monotonic() - started < 20
    assert quietly.status_code == 200
    assert quietly.headers["Preference-Applied"] == "wait=3"
    assert quietly.headers["X-Request-ID"]
    assert quietly.json()["scopes"][quiet_scope]["checkpoint"] == quiet_cp
    assert quietly.json()["scopes"][quiet_scope]["changes"] == []
    assert (lapsed.status_code, lapsed.json()["error"]["code"]) == (401, "unauthorized")
    assert (lost.status_code, lost.json()["error"]["code"]) == (403, "forbidden")


def test_a_held_pulls_answer_is_gzipped_like_any_reply_above_1_kib(
    server: subprocess.Popen, test_env: dict[str, str]
) -> None:
    user = f"zipped-{time.time_ns()}"
    headers, scope = _headers(test_env, user), f"user:{user}"
    cp = _checkpoint(headers, "zip-reader", scope)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            _hold, {**headers, "Accept-Encoding": "gzip"}, "zip-reader", scope, cp, 30
        )
        time.sleep(1)
        big = {**_put("big", "zip-writer", scope, 1), "value": {"text": "offgrid " * 400}}
        httpx.post(
            f"{BASE}/v1/sync/push",
            json={"client_id": "zip-writer", "mutations": [big]},
            headers={**headers, "Prefer": "wait=20"}, timeout=30,
        ).raise_for_status()  # fmt: skip
        reply = held.result(timeout=30)
    assert reply.status_code == 200
    assert reply.headers["Content-Encoding"] == "gzip"
    assert int(reply.headers["Content-Length"]) < 1024  # 3.2 KB of text, compressed
    assert reply.headers["Preference-Applied"] == "wait=30"
    changes = reply.json()["scopes"][scope]["changes"]  # httpx undoes the gzip
    assert [(c["key"], c["value"]) for c in changes] == [("big", {"text": "offgrid " * 400})]
