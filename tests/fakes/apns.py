"""A local APNs speaking the real protocol, for tests: HTTP/2 over TLS (test CA), provider
token checks, header checks, Apple's error bodies, and scripted failures.

Checks, in Apple's order: method and path (`POST /3/device/<hex token>`), the provider token
(ES256, `kid` = key id, `iss` = team id, signed by the team's key, `iat` not older than an
hour and not in the future), `apns-topic`, `apns-push-type` matching the payload (`alert` has
`aps.alert`; `background` has `content-available` and priority 5), `apns-priority`,
`apns-expiration`, `apns-collapse-id` (at most 64 bytes), the 4 KB payload limit.

Scripts: `script[token]` is a list of answers used one per request — `(status, reason)`,
`(status, reason, retry_after)`, or `"goaway"` (answer 200, then GOAWAY and close).
`unregister(token, when_ms)` makes the token answer 410 `Unregistered` with that timestamp.
`expire_tokens_before(t)` makes provider tokens issued before `t` answer 403
`ExpiredProviderToken`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fakes.h2server import H2Server, Reply, Request
from tests.fakes.tls import server_certificate

Script = tuple[int, str] | tuple[int, str, int] | str


class APNsFake:
    KEY_ID = "ABC123DEFG"
    TEAM_ID = "DEF123GHIJ"
    TOPIC = "dev.offgrid.example"

    def __init__(
        self, directory: Path, clock: Callable[[], float] = time.time, keep: bool = True
    ) -> None:
        self.ca_file, cert_file, key_file = server_certificate(directory)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.key_file = directory / "AuthKey.p8"
        self.key_file.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.clock = clock
        self.keep = keep  # False (benchmarks): count deliveries per token, keep no bodies
        self.delivered: Counter[str] = Counter()
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.rejected: list[tuple[str, str]] = []  # (token, reason) of every non-200
        self.provider_tokens: list[str] = []  # the bearer of every request, in order
        self.script: dict[str, list[Script]] = {}
        self.unregistered: dict[str, int] = {}
        self.tokens_expired_before = 0.0
        self._lock = threading.Lock()
        self.server = H2Server(cert_file, key_file, self.handle)
        self.origin = self.server.origin

    def env(self) -> dict[str, str]:
        """The settings that point Offgrid at this fake."""
        return {
            "APNS_KEY_FILE": str(self.key_file),
            "APNS_KEY_ID": self.KEY_ID,
            "APNS_TEAM_ID": self.TEAM_ID,
            "APNS_TOPIC": self.TOPIC,
            "APNS_BASE_URL": self.origin,
            "APNS_CA_FILE": str(self.ca_file),
        }

    def unregister(self, token: str, when_ms: int) -> None:
        self.unregistered[token] = when_ms

    def expire_tokens_before(self, moment: float) -> None:
        self.tokens_expired_before = moment

    def handle(self, request: Request) -> Reply:
        with self._lock:
            token = request.path.rsplit("/", 1)[-1]
            reply = self._judge(request, token)
            if reply.status != 200:
                self.rejected.append((token, json.loads(reply.body)["reason"]))
            return reply

    def _judge(self, request: Request, token: str) -> Reply:
        if request.method != "POST":
            return _error(405, "MethodNotAllowed")
        if not request.path.startswith("/3/device/"):
            return _error(404, "BadPath")
        bearer = request.headers.get("authorization", "")
        self.provider_tokens.append(bearer)
        problem = self._provider_token_problem(bearer)
        if problem:
            return _error(403, problem)
        problem = self._header_problem(request)
        if problem:
            return _error(400, problem)
        if not token or any(c not in "0123456789abcdefABCDEF" for c in token):
            return _error(400, "BadDeviceToken")
        if len(request.body) > 4096:
            return _error(413, "PayloadTooLarge")
        try:
            payload = json.loads(request.body)
        except ValueError:
            return _error(400, "PayloadEmpty" if not request.body else "BadPayload")
        problem = self._payload_problem(request.headers, payload)
        if problem:
            return _error(400, problem)
        scripted = self.script.get(token)
        goaway = False
        if scripted:
            answer = scripted.pop(0)
            if answer == "goaway":
                goaway = True
            else:
                status, reason, *retry = answer
                extra = {"retry-after": str(retry[0])} if retry else {}
                return _error(status, reason, headers=extra)
        if token in self.unregistered:
            return _error(410, "Unregistered", timestamp=self.unregistered[token])
        self.delivered[token] += 1
        if self.keep:
            self.received.setdefault(token, []).append(
                {"headers": dict(request.headers), "payload": payload}
            )
        return Reply(200, headers={"apns-id": request.headers.get("apns-id", "")}, goaway=goaway)

    def _provider_token_problem(self, bearer: str) -> str | None:
        scheme, _, token = bearer.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "MissingProviderToken"
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self.key.public_key(),
                algorithms=["ES256"],
                options={"verify_iat": False, "require": ["iss", "iat"]},
            )
        except jwt.PyJWTError:
            return "InvalidProviderToken"
        if header.get("kid") != self.KEY_ID or claims["iss"] != self.TEAM_ID:
            return "InvalidProviderToken"
        now = self.clock()
        if claims["iat"] > now + 60:
            return "InvalidProviderToken"
        if claims["iat"] < now - 3600 or claims["iat"] < self.tokens_expired_before:
            return "ExpiredProviderToken"
        return None

    def _header_problem(self, request: Request) -> str | None:
        headers = request.headers
        if headers.get("apns-topic") != self.TOPIC:
            return "MissingTopic" if "apns-topic" not in headers else "DeviceTokenNotForTopic"
        if headers.get("apns-push-type") not in ("alert", "background"):
            return "InvalidPushType"
        if headers.get("apns-priority") not in ("5", "10"):
            return "BadPriority"
        if not headers.get("apns-expiration", "").isdigit():
            return "BadExpirationDate"
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return "BadCollapseId"
        return None

    @staticmethod
    def _payload_problem(headers: dict[str, str], payload: Any) -> str | None:
        aps = payload.get("aps") if isinstance(payload, dict) else None
        if not isinstance(aps, dict):
            return "PayloadEmpty"
        if headers["apns-push-type"] == "background":
            if aps.get("content-available") != 1 or "alert" in aps:
                return "BadPayload"
            if headers["apns-priority"] != "5":
                return "BadPriority"  # Apple: background pushes must have priority 5
        elif not isinstance(aps.get("alert"), dict | str):
            return "BadPayload"
        return None

    def close(self) -> None:
        self.server.close()


def _error(
    status: int, reason: str, timestamp: int | None = None, headers: dict[str, str] | None = None
) -> Reply:
    body: dict[str, Any] = {"reason": reason}
    if timestamp is not None:
        body["timestamp"] = timestamp
    return Reply(
        status, json.dumps(body).encode(), {"content-type": "application/json", **(headers or {})}
    )


def main() -> None:
    """Serve a counting fake for benchmarks: `python -m tests.fakes.apns DIR`. Prints its
    settings as one JSON line; each line read on stdin is answered with the delivery counts
    (`{"total", "duplicates"}`)."""
    fake = APNsFake(Path(sys.argv[1]), keep=False)
    print(json.dumps(fake.env()), flush=True)
    for _ in sys.stdin:
        with fake._lock:
            counts = list(fake.delivered.values())
        total = sum(counts)
        print(json.dumps({"total": total, "duplicates": total - len(counts)}), flush=True)


if __name__ == "__main__":
    main()
