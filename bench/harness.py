"""Shared pieces of the benchmarks: an isolated vhost/database, real workers and a real API.

Benchmarks run against the services `./dev services` started (never mocks), in their own
RabbitMQ vhost and MongoDB database so they neither disturb nor see a dev stack.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from workers.factory import worker_argv

ROOT = Path(__file__).resolve().parent.parent


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def bench_env(name: str) -> dict[str, str]:
    """Environment for an isolated run: vhost and database `offgrid_<name>`, fresh."""
    for var in ("MONGODB_URL", "BROKER_URL", "REDIS_URL", "RABBITMQ_MANAGEMENT_URL"):
        if not os.environ.get(var):
            raise SystemExit(f"{var} is not set: run `./dev services` and `set -a; . .dev/app.env`")
    management = urlsplit(os.environ["RABBITMQ_MANAGEMENT_URL"])
    api = f"{management.scheme}://{management.hostname}:{management.port}/api"
    auth = (management.username or "guest", management.password or "guest")
    vhost = f"offgrid_{name}"
    with httpx.Client(auth=auth, timeout=30) as http:
        http.delete(f"{api}/vhosts/{vhost}")
        http.put(f"{api}/vhosts/{vhost}").raise_for_status()
        http.put(
            f"{api}/permissions/{vhost}/{auth[0]}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
    return {
        **os.environ,
        "MONGODB_URL": _with_path(os.environ["MONGODB_URL"], f"/offgrid_{name}"),
        "BROKER_URL": _with_path(os.environ["BROKER_URL"], f"/{vhost}"),
        "REDIS_URL": _with_path(os.environ["REDIS_URL"], "/14"),
        "JWT_SECRET": secrets.token_urlsafe(32),
        "ADMIN_API_KEY": secrets.token_urlsafe(32),
        "LOG_LEVEL": "WARNING",
        # Metrics of this run only (the dev stack's directory keeps other processes' samples).
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix=f"offgrid-{name}-metrics-"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }


class Processes:
    """Started subprocesses, each in its own process group, stopped together."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], env: dict[str, str], log: str) -> subprocess.Popen:
        out = (ROOT / ".dev" / "log" / log).open("w")
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def start_workers(procs: Processes, env: dict[str, str], count: int) -> list[subprocess.Popen]:
    """`count` worker processes (solo pool: one process each, so RSS is easy to read)."""
    return [
        procs.start(
            worker_argv(sys.executable, f"bench{i}@%h", "--pool", "solo", "--loglevel", "WARNING"),
            env,
            f"bench-worker-{i}.log",
        )
        for i in range(count)
    ]


def wait_ready(base: str, proc: subprocess.Popen | None = None, seconds: float = 60) -> str:
    """Wait until the API at `base` answers `/readyz` with 200 (and `proc` is still running)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the API exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API at {base} did not become ready")


def start_api(procs: Processes, env: dict[str, str], port: int, workers: int = 2) -> str:
    """gunicorn serving the API on `port` (gunicorn.conf.py: gevent workers); its base URL."""
    proc = procs.start(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "api:create_app()"],
        env,
        f"bench-api-{port}.log",
    )  # fmt: skip
    return wait_ready(f"http://127.0.0.1:{port}", proc)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_pids() -> dict[str, int]:
    """PIDs of the services `./dev services` started (SecantusDB, Redis, RabbitMQ)."""
    run = Path(os.environ.get("OFFGRID_DEV_STATE", ROOT / ".dev")) / "run"
    pids = {}
    files = {"store": "mongo.pid", "redis": "redis.pid", "broker": "rabbitmq.beam.pid"}
    for name, file in files.items():
        try:
            pids[name] = int((run / file).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return pids
