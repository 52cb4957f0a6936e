"""The Procfile's four processes (gunicorn web, worker, beat, flower) serve a real round trip."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

ROOT = Path(__file__).resolve().parent.parent
WEB = "http://127.0.0.1:18000"
FLOWER = "http://127.0.0.1:15555"
FLOWER_AUTH = ("ops", "flower-test-password")
LOG = ROOT / ".dev" / "log" / "test-procfile.log"


def _wait_until(check: object, seconds: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"honcho exited with {proc.returncode}")
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"not ready within {seconds}s")


@pytest.fixture(scope="module")
def stack(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = LOG.open("w")
    env = {
        **os.environ,
        **test_env,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "OFFGRID_BIND": "127.0.0.1:18000",
        "FLOWER_PORT": "15555",
        "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH),
        "WORKER_CONCURRENCY": "1",
        "WEB_CONCURRENCY": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("prometheus")),
        "BEAT_SCHEDULE_FILE": str(tmp_path_factory.mktemp("beat") / "schedule"),
        # As `./dev up` at a terminal; and the due-push job every second, to see it stay quiet.
        "LOG_FORMAT": "console",
        "DUE_PUSHES_INTERVAL": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-f", "Procfile", "-e", "/dev/null"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_until(lambda: httpx.get(f"{WEB}/readyz", timeout=2).status_code == 200, 90, proc)
        _wait_until(lambda: httpx.get(FLOWER, timeout=2).status_code == 401, 60, proc)
        yield LOG
        assert proc.poll() is None, "a Procfile process died during the tests"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
        log.close()


def test_a_fresh_stack_serves_every_charted_metric_family(stack: Path) -> None:
    """Before any push or sync, dashboards and alerts see zeros, not "no data" (this runs
    first in the module, against the stack as it started)."""
    charted = set()
    for path in (ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"):
        charted |= set(re.findall(r"\boffgrid_\w+", path.read_text()))
    charted |= set(re.findall(r"\boffgrid_\w+", (ROOT / "docs" / "operations.md").read_text()))
    assert {"offgrid_push_outcomes_total", "offgrid_tasks_total"} <= charted
    served = {
        line.split("{")[0].split(" ")[0]
        for line in httpx.get(f"{WEB}/metrics", timeout=5).text.splitlines()
        if line.startswith("offgrid_")
    }
    missing = {name for name in charted if not any(s.startswith(name) for s in served)}
    assert missing == set(), f"not served by a fresh stack: {sorted(missing)}"


def test_an_idle_stack_logs_readable_lines_and_nothing_about_idle_jobs(stack: Path) -> None:
    time.sleep(4)  # beat has sent the due-push job a few times, and the worker ran it
    lines = stack.read_text().splitlines()
    # honcho prefixes each line with its time and process: "12:00:01 beat.1 | ..."
    beat = [line.split("| ", 1)[1] for line in lines if " beat.1 " in line and "| " in line]
    assert any("beat: Starting" in line for line in beat), beat[:5]
    idle = ("Sending due task", "Task maintenance.send_due_pushes", "send_due_pushes: 0")
    assert [line for line in lines if any(words in line for words in idle)] == []
    records = [
        line.split("| ", 1)[1]
        for line in lines
        if re.match(r"^\S+ (web|worker|beat)\.1 ", line) and "| " in line
    ]
    readable = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\S+: ")
    assert [r for r in records if r.startswith("{")] == []  # no JSON at a terminal
    assert len([r for r in records if readable.match(r)]) >= 3


def test_gunicorn_serves_push_status_pull(stack: None, test_env: dict[str, str]) -> None:
    token = jwt.encode(
        {"sub": "procfile-user", "exp": int(time.time()) + 600},
        test_env["JWT_SECRET"],
        algorithm="HS256",
    )
    headers = {"Authorization": f"Bearer {token}"}
    mutation = {
        "id": 1,
        "scope": "user:procfile-user",
        "collection": "todos",
        "key": "t1",
        "op": "put",
        "value": {"title": "from gunicorn"},
        "hlc": "1764068000000-0000-procfile-client",
    }
    pushed = httpx.post(
        f"{WEB}/v1/sync/push",
        json={"client_id": "procfile-client", "mutations": [mutation]},
        headers=headers,
        timeout=10,
    )
    assert pushed.status_code == 202
    batch_id = pushed.json()["batch_id"]

    deadline = time.monotonic() + 30
    status = {}
    while time.monotonic() < deadline:
        status = httpx.get(f"{WEB}/v1/sync/batches/{batch_id}", headers=headers).json()
        if status["status"] == "applied":
            break
        time.sleep(0.1)
    assert status["status"] == "applied"

    pulled = httpx.post(
        f"{WEB}/v1/sync/pull",
        json={"client_id": "procfile-client", "scopes": {"user:procfile-user": None}},
        headers=headers,
    ).json()
    changes = pulled["scopes"]["user:procfile-user"]["changes"]
    assert [c["value"] for c in changes] == [{"title": "from gunicorn"}]
    assert pulled["last_mutation_id"] == 1


def test_flower_requires_basic_auth(stack: None) -> None:
    assert httpx.get(FLOWER, timeout=5).status_code == 401
    assert httpx.get(FLOWER, auth=("ops", "wrong"), timeout=5).status_code == 401
    assert httpx.get(FLOWER, auth=FLOWER_AUTH, timeout=5).status_code == 200


def test_flowers_broker_tab_shows_the_depth_of_every_queue_including_dead_letters(
    stack: None,
) -> None:
    def broker_tab() -> str:
        return httpx.get(f"{FLOWER}/broker", auth=FLOWER_AUTH, timeout=5).text

    # Rows come from the management API; Flower learns the workers' queues from their
    # heartbeats, so give it a few seconds.
    wanted = [f"<td>{q}</td>" for q in ("sync", "push", "maintenance", "offgrid.dead_letter")]
    deadline = time.monotonic() + 30
    page = broker_tab()
    while time.monotonic() < deadline and not all(row in page for row in wanted):
        time.sleep(1)
        page = broker_tab()
    assert [row for row in wanted if row not in page] == []


def test_flower_asks_the_management_api_for_its_own_vhost_only() -> None:
    from flower.utils import broker

    from workers.flower import patch_broker_view

    patch_broker_view()
    default = broker.Broker("amqp://guest:guest@localhost:5672//", "http://h:15672/api/")
    named = broker.Broker("amqp://guest:guest@localhost:5672/offgrid", "http://h:15672/api/")
    assert (default.vhost, named.vhost) == ("%2F", "offgrid")


def test_openapi_document_lists_the_sync_endpoints(stack: None) -> None:
    paths = httpx.get(f"{WEB}/openapi.json", timeout=5).json()["paths"]
    assert {"/v1/sync/push", "/v1/sync/pull", "/v1/sync/batches/{batch_id}"} <= set(paths)


def test_metrics_add_up_across_gunicorn_processes(stack: None) -> None:
    def healthz_count() -> float:
        text = httpx.get(f"{WEB}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith("offgrid_http_requests_total{") and 'route="/healthz"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = healthz_count()
    for _ in range(20):  # a new connection each: gunicorn spreads them over both processes
        assert httpx.get(f"{WEB}/healthz", timeout=5).status_code == 200
    assert healthz_count() == before + 20
    text = httpx.get(f"{WEB}/metrics", timeout=5).text
    assert 'offgrid_queue_depth{queue="sync"}' in text
    assert "offgrid_sync_lag_seconds" in text
