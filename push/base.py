"""What every push provider shares: the interface, the outcomes, HTTP and TLS helpers.
One module per provider (`apns`, `fcm`, `webpush`) builds on this; `push.providers` picks them
from the settings. Each provider response maps to one outcome.

Outcomes: `delivered`, `retry` (later, honouring `retry_after`), `token_dead` (prune the
device), `config_error` (our credentials or settings), `payload_error` (this message).
`reason` is a short, bounded code (the provider's own reason where it gives one) used as a
metrics label; `detail` is free text for the delivery record. A platform without credentials
gets `UnconfiguredProvider`, whose every send is a `config_error`, so a push to it ends
`failed` with that reason instead of hanging.

A send that reached the provider but got no answer may have been delivered: it is never
retried (at most once) and counts as failed with reason `unknown_outcome`.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx
import requests

OUTCOMES = ("delivered", "retry", "token_dead", "config_error", "payload_error")


@dataclass(frozen=True)
class Outcome:
    kind: str
    reason: str = ""
    detail: str = ""
    retry_after: float | None = None
    # token_dead only: when the provider learned the token was dead (APNs 410 timestamp). A
    # device registered again after that moment is kept.
    dead_since: datetime | None = None


class Provider(Protocol):
    def send(self, device: dict[str, Any], message: dict[str, Any]) -> Outcome: ...


class UnconfiguredProvider:
    def __init__(self, platform: str) -> None:
        self.platform = platform

    def send(self, device: dict[str, Any], message: dict[str, Any]) -> Outcome:
        return Outcome(
            "config_error", "unconfigured", f"no credentials configured for {self.platform}"
        )


class CASession(requests.Session):
    """A session that trusts `ca_file`, even when REQUESTS_CA_BUNDLE is set (requests lets the
    environment override a session's `verify`)."""

    def __init__(self, ca_file: str) -> None:
        super().__init__()
        self.verify = ca_file

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        merged = super().merge_environment_settings(*args, **kwargs)
        merged["verify"] = self.verify
        return merged


def session_for(ca_file: str | None) -> requests.Session:
    return CASession(ca_file) if ca_file else requests.Session()


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verification against the system store, or against `ca_file` alone (a test CA)."""
    return ssl.create_default_context(cafile=ca_file)


def http2_client(ca_file: str | None, timeout: float) -> httpx.Client:
    """One HTTP/2 connection, kept open: a provider client per sender thread owns one."""
    return httpx.Client(
        http2=True,
        verify=tls_context(ca_file),
        timeout=httpx.Timeout(timeout, connect=5.0),
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
    )


def attempt(request: Callable[[], httpx.Response]) -> httpx.Response | Outcome:
    """Make the request; a failure becomes its outcome. Not connected: nothing was sent, so
    a retry cannot deliver twice. Sent but unanswered: it may have arrived, never retried."""
    try:
        return request()
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        return Outcome("retry", "network", type(exc).__name__)
    except httpx.HTTPError as exc:
        return Outcome("payload_error", "unknown_outcome", type(exc).__name__)


def json_object(content: bytes) -> dict[str, Any]:
    """A provider's JSON error body, or {} when it is not a JSON object."""
    try:
        answer = json.loads(content)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def json_or_empty(response: httpx.Response) -> dict[str, Any]:
    return json_object(response.content)


def retry_after_seconds(value: str | None) -> float | None:
    """A `Retry-After` in seconds (the HTTP-date form is not used by push providers)."""
    return float(value) if value and value.strip().isdigit() else None
