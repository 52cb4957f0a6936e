"""A user's collections module (`OFFGRID_COLLECTIONS`): web and worker find it the same way, and
a process that cannot load it refuses to start instead of consuming batches it cannot apply."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from bench.harness import wait_ready
from config import Settings
from tests.conftest import ROOT, _wait_for_workers
from workers.factory import worker_argv

USER_MODULE = "offgrid_test_user_collections"
WEB = "http://127.0.0.1:18077"


@pytest.fixture
def user_module() -> Iterator[str]:
    """What a user does: a copy of config/example_collections.py beside the app, plus a
    collection of their own."""
    path = ROOT / f"{USER_MODULE}.py"
    path.write_text(
        "from config.example_collections import COLLECTIONS as EXAMPLES\n"
        "from sync.collections import CollectionSpec\n\n"
        'COLLECTIONS = [*EXAMPLES, CollectionSpec("widgets")]\n'
    )
    yield USER_MODULE
    path.unlink()


def _gunicorn(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            WEB.removeprefix("http://"),
            "api:create_app()",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.usefixtures("sync_paused")
def test_a_collections_module_in_the_project_root_works_in_web_and_worker(
    user_module: str, test_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    env = {**os.environ, **test_env, "OFFGRID_COLLECTIONS": user_module}
    # Started as the Procfile starts it: the `celery` script, which (unlike `python -m celery`)
    # does not put the working directory on the path.
    name = f"user-collections@{os.uname().nodename}"
    argv = worker_argv(sys.executable, name, "-c", "1")
    argv[:3] = [str(Path(sys.executable).parent / "celery")]
    worker = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=(tmp_path / "worker.log").open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    web = _gunicorn(env, tmp_path / "web.log")
    try:
        _wait_for_workers(settings, [name], worker)
        wait_ready(WEB, web)
        token = jwt.encode(
            {"sub": "widget-user", "exp": int(time.time()) + 600},
            test_env["JWT_SECRET"],
            algorithm="HS256",
        )
        mutation = {
            "id": 1, "scope": "user:widget-user", "collection": "widgets", "key": "w1",
            "op": "put", "value": {"size": 3}, "hlc": f"{int(time.time() * 1000)}-0000-widgets01",
        }  # fmt: skip
        reply = httpx.post(
            f"{WEB}/v1/sync/push",
            json={"client_id": "widgets01", "mutations": [mutation]},
            headers={"Authorization": f"Bearer {token}", "Prefer": "wait=20"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["status"] == "applied"
        assert reply.json()["results"] == [{"id": 1, "status": "applied", "version": 1}]
    finally:
        for proc in (web, worker):
            os.killpg(proc.pid, 15)
            proc.wait(30)


@pytest.mark.parametrize("process", ["worker", "beat", "web"])
def test_a_process_that_cannot_load_the_collections_module_refuses_to_start(
    process: str, test_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ, **test_env, "OFFGRID_COLLECTIONS": "no_such_collections_module"}
    argv = {
        "worker": worker_argv(sys.executable, "refused@%h", "-c", "1"),
        "beat": [
            sys.executable, "-m", "celery", "-A", "workers.celery_app:celery_app", "beat",
            "--schedule", str(tmp_path / "beat-schedule"),
        ],
        "web": [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:18078", "api:create_app()"],
    }[process]  # fmt: skip
    try:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the {process} kept running without its collections module")
    assert done.returncode != 0
    assert "OFFGRID_COLLECTIONS='no_such_collections_module'" in done.stdout + done.stderr
