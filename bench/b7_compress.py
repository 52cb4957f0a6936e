"""B7: the bytes and the web process's CPU of a 500-record pull page, plain and compressed.

One gunicorn worker process and one Celery worker. A user's scope gets 500 records (`notes`
with a title and a short body, as an app's); the same first page is then pulled `--pulls`
times with each `Accept-Encoding`, one after another on one connection. Reported per
encoding: the bytes on the wire and the web process's CPU per page (from /proc), and the
difference to the plain page, which is what compressing it costs.

    ./dev services && set -a && . .dev/app.env && set +a
    .venv/bin/python -m bench.b7_compress --pulls 200
"""

from __future__ import annotations

import argparse
import datetime
import time
import uuid

import httpx
import jwt

from bench.harness import Processes, bench_env, cpu_seconds, start_api, start_workers

PORT = 18170
BASE = f"http://127.0.0.1:{PORT}"
ENCODINGS = ("identity", "gzip", "br", "zstd")


def _records(http: httpx.Client, headers: dict[str, str], client_id: str, scope: str) -> None:
    mutations = [
        {
            "id": n + 1, "scope": scope, "collection": "notes", "key": f"note-{n:04d}",
            "op": "put", "hlc": f"{int(time.time() * 1000):013d}-{n:04x}-{client_id}",
            "value": {"title": f"Groceries {n}", "body": f"milk, eggs, {n} apples and bread",
                      "done": n % 3 == 0, "tags": ["home", "weekly"]},
        }
        for n in range(500)
    ]  # fmt: skip
    reply = http.post(
        f"{BASE}/v1/sync/push",
        json={"client_id": client_id, "mutations": mutations},
        headers={**headers, "Prefer": "wait=30"},
    )
    assert reply.json()["status"] == "applied", reply.text


def run(secret: str, web: int, pulls: int) -> dict[str, tuple[int, float]]:
    user, client_id = f"b7-{uuid.uuid4().hex[:8]}", f"b7c{uuid.uuid4().hex[:12]}"
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, secret, algorithm="HS256")
    headers = {"Authorization": f"Bearer {token}"}
    scope = f"user:{user}"
    body = {"client_id": client_id, "scopes": {scope: None}, "limit": 500}
    results = {}
    with httpx.Client(timeout=60) as http:
        _records(http, headers, client_id, scope)
        for encoding in ENCODINGS:
            ask = {**headers, "Accept-Encoding": encoding}
            for _ in range(20):  # warm up
                http.post(f"{BASE}/v1/sync/pull", json=body, headers=ask)
            before = cpu_seconds(web)
            size = 0
            for _ in range(pulls):
                with http.stream("POST", f"{BASE}/v1/sync/pull", json=body, headers=ask) as r:
                    size = sum(len(chunk) for chunk in r.iter_raw())
                    got = r.headers.get("Content-Encoding", "identity")
                    assert got == encoding, (encoding, got)
            results[encoding] = (size, (cpu_seconds(web) - before) / pulls)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pulls", type=int, default=200)
    args = parser.parse_args()
    env = bench_env("b7")
    procs = Processes()
    try:
        start_workers(procs, env, 1)
        start_api(procs, env, PORT, workers=1)
        time.sleep(1)
        master = procs.procs[-1].pid
        with open(f"/proc/{master}/task/{master}/children") as children:
            web = int(children.read().split()[0])
        results = run(env["JWT_SECRET"], web, args.pulls)
    finally:
        procs.stop()
    plain_size, plain_cpu = results["identity"]
    print(f"B7 pull page of 500 records, {datetime.date.today()}, {args.pulls} pulls each\n")
    print("| Accept-Encoding | bytes | of plain | web CPU per page | compressing costs |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for encoding, (size, cpu) in results.items():
        print(
            f"| {encoding} | {size:,} | {size / plain_size:.1%} | {cpu * 1000:.2f} ms "
            f"| {(cpu - plain_cpu) * 1000:+.2f} ms |"
        )


if __name__ == "__main__":
    main()
