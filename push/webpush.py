"""Web Push provider (RFC 8030/8291/8292) through pywebpush: aes128gcm payloads, VAPID auth."""

from __future__ import annotations

import json
from typing import Any

import requests
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush

from push.providers import Outcome

_RETRYABLE = {429, 500, 502, 503, 504}


class _CASession(requests.Session):
    """A session that trusts `ca_file`, even when REQUESTS_CA_BUNDLE is set (requests lets the
    environment override a session's `verify`)."""

    def __init__(self, ca_file: str) -> None:
        super().__init__()
        self.verify = ca_file

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        merged = super().merge_environment_settings(*args, **kwargs)
        merged["verify"] = self.verify
        return merged


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    return float(value) if value and value.isdigit() else None


class WebPushProvider:
    """One requests session (keep-alive connections) per worker process."""

    def __init__(self, vapid_private_key: str, subject: str, ca_file: str | None = None) -> None:
        self._vapid = Vapid02.from_string(private_key=vapid_private_key)
        self._subject = subject
        self._session = _CASession(ca_file) if ca_file else requests.Session()

    def send(self, device: dict[str, Any], message: dict[str, Any]) -> Outcome:
        try:
            subscription = json.loads(device["token"])
            endpoint = subscription["endpoint"]
        except (ValueError, TypeError, KeyError):
            return Outcome("token_dead", "the token is not a PushSubscription")
        if not isinstance(endpoint, str) or not endpoint.startswith("https://"):
            return Outcome("token_dead", "the subscription has no https endpoint")
        options = message["options"]
        payload = {
            "push_id": message["push_id"],
            "notification": message.get("notification"),
            "data": message.get("data"),
        }
        headers = {"Urgency": "high" if options.get("priority", "high") == "high" else "normal"}
        if options.get("collapse_key"):
            headers["Topic"] = options["collapse_key"][:32]
        try:
            webpush(
                subscription,
                data=json.dumps(payload, separators=(",", ":")),
                vapid_private_key=self._vapid,
                vapid_claims={"sub": self._subject},  # a fresh dict: pywebpush mutates it
                ttl=int(options.get("ttl", 86400)),
                headers=headers,
                timeout=10,
                requests_session=self._session,
            )
        except WebPushException as exc:
            response = exc.response
            if response is None:
                return Outcome("retry", f"no response: {exc}")
            code = response.status_code
            if code in (404, 410):
                return Outcome("token_dead", f"{code} subscription gone")
            if code in _RETRYABLE:
                return Outcome("retry", f"{code}", _retry_after(response))
            if code in (401, 403):
                return Outcome("config_error", f"{code} VAPID rejected")
            return Outcome("payload_error", f"{code} {response.text[:200]}")
        except requests.ConnectionError as exc:
            # Not connected: nothing was sent, so trying again cannot deliver twice.
            return Outcome("retry", f"network: {type(exc).__name__}")
        except requests.RequestException as exc:
            # Sent, but no answer: it may have been delivered. At most once wins: no retry.
            return Outcome("payload_error", f"unknown outcome: {type(exc).__name__}")
        return Outcome("delivered")
