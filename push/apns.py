"""APNs provider: HTTP/2 to `/3/device/<token>` with an ES256 provider token.

- One HTTP/2 connection per worker process, kept open (Apple asks for long-lived connections;
  opening one per send is what gets a sender throttled), carrying many sends at once as
  concurrent streams (`push.h2client`).
- The provider token (a JWT signed with the team's .p8 key) is reused for `TOKEN_LIFETIME`
  (40 minutes): Apple rejects a token older than 60 minutes and one refreshed more often than
  every 20 minutes. One `ProviderTokens` per process is shared by all its clients.
- Headers follow the payload: an alert is `apns-push-type: alert` at priority 10 (5 when the
  push asked for normal priority); a silent push is `background` with `content-available`
  and priority 5, as Apple requires. `apns-collapse-id` is the collapse key or else the push
  id, so a duplicate send (the last guard of at most once) replaces, never adds.
- A GOAWAY that names streams as unprocessed (or a refused stream) sends them once more on a
  new connection (nothing was delivered); a stream that was processed but never answered may
  have been delivered, so it is not retried.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt

from push.base import Outcome, json_object, retry_after_seconds, tls_context
from push.h2client import H2Connection, LoopThread, NotSent, Response, Unanswered

TOKEN_LIFETIME = 40 * 60
MAX_PAYLOAD = 4096
# 400 reasons that say the token itself is bad: never retried, the device is pruned.
DEAD_TOKEN_400 = {"BadDeviceToken"}
# 400/403 reasons about our own settings: a wrong APNS_TOPIC answers DeviceTokenNotForTopic
# for every device, so it must not prune the registry.
CONFIG_REASONS = {
    "DeviceTokenNotForTopic",
    "TopicDisallowed",
    "MissingTopic",
    "BadCertificate",
    "BadCertificateEnvironment",
    "InvalidProviderToken",
    "MissingProviderToken",
    "Forbidden",
    "BadPath",
    "MethodNotAllowed",
}


def build_request(message: dict[str, Any], topic: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The APNs JSON body and headers (without authorization) for one message."""
    options = message["options"]
    notification = message.get("notification") or {}
    silent = bool(options.get("silent")) or not notification
    aps: dict[str, Any] = {}
    if silent:
        aps["content-available"] = 1
    else:
        aps["alert"] = {"title": notification.get("title", ""), "body": notification.get("body")}
        for field in ("sound", "badge", "category"):
            if notification.get(field) is not None:
                aps[field] = notification[field]
        if notification.get("image"):
            aps["mutable-content"] = 1  # a notification service extension fetches the image
    body: dict[str, Any] = {**(message.get("data") or {})}
    if notification.get("image") and not silent:
        body["image"] = notification["image"]
    body["aps"] = aps
    high = options.get("priority", "high") == "high"
    headers = {
        "apns-topic": topic,
        "apns-push-type": "background" if silent else "alert",
        "apns-priority": "10" if high and not silent else "5",
        "apns-expiration": str(message["expires_at"]),
        "apns-collapse-id": (options.get("collapse_key") or message["push_id"])[:64],
        "apns-id": str(uuid.UUID(hex=message["push_id"][:32])),
    }
    return body, headers


class ProviderTokens:
    """The team's provider token, made anew every TOKEN_LIFETIME. One per worker process,
    shared by its sender threads: Apple refuses a key whose token changes too often
    (`TooManyProviderTokenUpdates`), so threads must not each sign their own."""

    def __init__(
        self, key_pem: str, key_id: str, team_id: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = key_pem
        self._key_id = key_id
        self._team_id = team_id
        self._clock = clock
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def current(self, fresh: bool = False) -> str:
        with self._lock:
            now = self._clock()
            if fresh or self._token is None or now - self._token[1] >= TOKEN_LIFETIME:
                token = jwt.encode(
                    {"iss": self._team_id, "iat": int(now)},
                    self._key,
                    algorithm="ES256",
                    headers={"kid": self._key_id},
                )
                self._token = (token, now)
            return self._token[0]


class APNsProvider:
    """APNs for one worker process: one HTTP/2 connection carrying many sends at once, driven
    by an event loop in a thread of its own. `send_many` may be called from any thread."""

    multiplexed = True  # push.delivery sends a whole group at once through `send_many`

    def __init__(
        self,
        *,
        key_pem: str,
        key_id: str,
        team_id: str,
        topic: str,
        base_url: str,
        ca_file: str | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
        tokens: ProviderTokens | None = None,
    ) -> None:
        self._tokens = tokens or ProviderTokens(key_pem, key_id, team_id, clock)
        self._topic = topic
        self._origin = base_url.rstrip("/")
        self._context = tls_context(ca_file)
        self._context.set_alpn_protocols(["h2"])
        self._timeout = timeout
        self._loop = LoopThread("apns")
        self._connection: H2Connection | None = None
        self._connecting: asyncio.Lock | None = None

    def provider_token(self, fresh: bool = False) -> str:
        return self._tokens.current(fresh)

    def send(self, device: dict[str, Any], message: dict[str, Any]) -> Outcome:
        return self.send_many([device], message)[0]

    def send_many(self, devices: list[dict[str, Any]], message: dict[str, Any]) -> list[Outcome]:
        """One outcome per device, in order; all in flight at once (up to the stream limit)."""
        body, headers = build_request(message, self._topic)
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        if len(content) > MAX_PAYLOAD:
            too_large = Outcome("payload_error", "PayloadTooLarge", f"{len(content)} bytes")
            return [too_large for _ in devices]
        header_list = list(headers.items())
        return self._loop.run(self._send_all(devices, content, header_list))

    async def _send_all(
        self, devices: list[dict[str, Any]], content: bytes, headers: list[tuple[str, str]]
    ) -> list[Outcome]:
        sends = [self._send_one(device["token"], content, headers) for device in devices]
        return list(await asyncio.gather(*sends))

    async def _send_one(
        self, token: str, content: bytes, headers: list[tuple[str, str]]
    ) -> Outcome:
        if not token.isalnum():
            return Outcome("token_dead", "BadDeviceToken", "not a device token")
        outcome = await self._post(token, content, headers, self.provider_token())
        if outcome.reason == "ExpiredProviderToken":
            # Made anew and tried once more; a second rejection is a configuration problem.
            outcome = await self._post(token, content, headers, self.provider_token(fresh=True))
            if outcome.reason == "ExpiredProviderToken":
                return Outcome("config_error", outcome.reason, "rejected twice; check the clock")
        return outcome

    async def _post(
        self, device_token: str, content: bytes, headers: list[tuple[str, str]], bearer: str
    ) -> Outcome:
        path = f"/3/device/{device_token}"
        headers = [*headers, ("authorization", f"bearer {bearer}")]
        failure: Exception | None = None
        for _ in range(2):  # a stream the server did not process goes once more, anew
            try:
                connection = await self._open()
                response = await connection.request(path, headers, content, self._timeout)
            except NotSent as exc:
                failure = exc
                continue
            except Unanswered as exc:
                return Outcome("payload_error", "unknown_outcome", str(exc))
            return _outcome(response)
        return Outcome("retry", "network", str(failure))

    async def _open(self) -> H2Connection:
        """The open connection, or a new one (after a GOAWAY or a lost connection)."""
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._connection is None or self._connection.closed:
                connection = H2Connection(self._origin, self._context)
                await connection.connect()
                self._connection = connection
            return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._loop.run(self._connection.close())
        self._loop.stop()


def _outcome(response: Response) -> Outcome:
    code = response.status
    if code == 200:
        return Outcome("delivered", "200")
    answer = json_object(response.body)
    reason = str(answer.get("reason") or code)
    if code == 410:
        stamp = answer.get("timestamp")
        since = datetime.fromtimestamp(stamp / 1000, UTC) if isinstance(stamp, int) else None
        return Outcome("token_dead", reason, "unregistered", dead_since=since)
    if code == 403 and reason == "ExpiredProviderToken":
        return Outcome("config_error", reason)  # send() refreshes and retries once
    if code == 429 or code >= 500:
        retry = retry_after_seconds(response.headers.get("retry-after"))
        return Outcome("retry", reason, str(code), retry)
    if reason in DEAD_TOKEN_400:
        return Outcome("token_dead", reason)
    if reason in CONFIG_REASONS or code in (403, 404, 405):
        return Outcome("config_error", reason, str(code))
    return Outcome("payload_error", reason, str(code))
