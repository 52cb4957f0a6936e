"""deploy/nginx/offgrid.conf in front of the real stack (Debian's nginx, installed by
`./dev test`): it passes `nginx -t`, and a push, a pull, a held pull woken by a commit, a
request id and an oversize body go through it over TLS as the API's own clients expect."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
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
from tests.fakes.tls import server_certificate

pytestmark = pytest.mark.usefixtures("worker")
WEB_PORT, TLS_PORT, PLAIN_PORT = 18091, 18443, 18480
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def _nginx_conf(directory: Path, cert: Path, key: Path) -> Path:
    """The shipped file, with this test's addresses and certificate, in a minimal nginx.conf."""
    site = (ROOT / "deploy/nginx/offgrid.conf").read_text()
    for old, new in [
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{WEB_PORT};"),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{TLS_PORT} ssl http2;"),
        ("listen 80;", f"listen 127.0.0.1:{PLAIN_PORT};"),
        ("/etc/ssl/offgrid/fullchain.pem", str(cert)),
        ("/etc/ssl/offgrid/privkey.pem", str(key)),
    ]:
        assert old in site, old
        site = site.replace(old, new)
    (directory / "offgrid.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {directory}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = directory / "nginx.conf"
    main.write_text(
        f"daemon off;\nworker_processes 1;\npid {directory}/nginx.pid;\n"
        f"error_log {directory}/error.log info;\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n    access_log {directory}/access.log;\n{temp}\n"
        f"    include {directory}/offgrid.conf;\n}}\n"
    )
    return main


@pytest.fixture
def proxied(test_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """gunicorn (PROXY_HOPS=1) behind the shipped nginx config; the HTTPS base URL and the CA
    to trust."""
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{WEB_PORT}", "--workers", "1",
         "api:create_app()"],
        cwd=ROOT, env={**os.environ, **test_env, "PROXY_HOPS": "1"},
        stdout=(tmp_path / "web.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    nginx = None
    try:
        wait_ready(f"http://127.0.0.1:{WEB_PORT}", web)
        ca, cert, key = server_certificate(tmp_path)
        conf = _nginx_conf(tmp_path, cert, key)
        checked = subprocess.run(
            [NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stderr
        nginx = subprocess.Popen(
            [NGINX, "-p", str(tmp_path), "-c", str(conf)],
            stdout=(tmp_path / "nginx.out").open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"https://127.0.0.1:{TLS_PORT}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/healthz", verify=_trusting(ca), timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                assert nginx.poll() is None, (tmp_path / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not come up"
                time.sleep(0.2)
        yield base, ca
    finally:
        if nginx is not None and nginx.poll() is None:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(15)
        os.killpg(web.pid, signal.SIGKILL)
        web.wait(10)


def _batch(scope: str, n: int, key: str) -> dict[str, Any]:
    writer = "proxied-writer"
    hlc = f"{int(time.time() * 1000):013d}-{n:04x}-{writer}"
    mutation = {"id": n, "scope": scope, "collection": "notes", "key": key, "op": "put",
                "value": {"n": n}, "hlc": hlc}  # fmt: skip
    return {"client_id": writer, "mutations": [mutation]}


def test_the_shipped_nginx_config_carries_pushes_pulls_held_pulls_and_limits(
    proxied: tuple[str, Path], test_env: dict[str, str]
) -> None:
    base, ca = proxied
    user = f"proxied-{time.time_ns()}"
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 600}, test_env["JWT_SECRET"])
    auth, scope = {"Authorization": f"Bearer {token}"}, f"user:{user}"
    with httpx.Client(base_url=base, verify=_trusting(ca), timeout=60) as http:
        pushed = http.post(
            "/v1/sync/push", json=_batch(scope, 1, "a"),
            headers={**auth, "Prefer": "wait=20", "X-Request-ID": "proxied-request-1"},
        )  # fmt: skip
        assert pushed.status_code == 200 and pushed.json()["status"] == "applied"
        assert pushed.headers["X-Request-ID"] == "proxied-request-1"
        pulled = http.post(
            "/v1/sync/pull", json={"client_id": "proxied-reader", "scopes": {scope: None}},
            headers=auth,
        )  # fmt: skip
        assert [c["key"] for c in pulled.json()["scopes"][scope]["changes"]] == ["a"]
        assert pulled.headers["X-Request-ID"]  # made by nginx when the client sends none
        checkpoint = pulled.json()["scopes"][scope]["checkpoint"]

        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(
                http.post, "/v1/sync/pull",
                json={"client_id": "proxied-reader", "scopes": {scope: checkpoint}},
                headers={**auth, "Prefer": "wait=40"},
            )  # fmt: skip
            time.sleep(1.5)
            assert not held.done()
            started = time.monotonic()
            http.post(
                "/v1/sync/push", json=_batch(scope, 2, "b"), headers={**auth, "Prefer": "wait=20"}
            ).raise_for_status()
            woken = held.result(timeout=30)
        assert time.monotonic() - started < 5
        assert woken.headers["Preference-Applied"] == "wait=40"
        assert [c["key"] for c in woken.json()["scopes"][scope]["changes"]] == ["b"]

        oversize = http.post(
            "/v1/sync/push", content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
            headers={**auth, "Content-Type": "application/json"},
        )  # fmt: skip
        assert oversize.status_code == 413
        assert oversize.json()["error"]["code"] == "payload_too_large"
        plain = httpx.get(f"http://127.0.0.1:{PLAIN_PORT}/healthz", timeout=10)
        assert plain.status_code == 308
        assert plain.headers["Location"].startswith("https://")
