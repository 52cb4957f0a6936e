"""Web Push provider (RFC 8030/8291/8292) through pywebpush: aes128gcm payloads, VAPID auth."""

from __future__ import annotations

import json
from typing import Any

import requests
from py_vapid import Vapid02
from pywebpush import WebPushException, webpush

from push.base import Outcome, retry_after_seconds, session_for

_RETRYABLE = {429, 500, 502, 503, 504}


class WebPushProvider:
    """One requests session (keep-alive connections) per worker process."""

    def __init__(self, vapid_private_key: str, subject: str, ca_file: str | None = None) -> None:
        self._vapid = Vapid02.from_string(private_key=vapid_private_key)
        self._subject = subject
        self._session = session_for(ca_file)

    def send(self, device: dict[str, Any], message: dict[str, Any]) -> Outcome:
        try:
            subscription = json.loads(device["token"])
            endpoint = subscription["endpoint"]
        except (ValueError, TypeError, KeyError):
            return Outcome("token_dead", "not_a_subscription", "not PushSubscription JSON")
        if not isinstance(endpoint, str) or not endpoint.startswith("https://"):
            return Outcome("token_dead", "not_a_subscription", "no https endpoint")
        options = message["options"]
        payload = {
            "push_id": message["push_id"],
            "notification": message.get("notification"),
            "data": message.get("data"),
        }
        headers = {"Urgency": "high" if options.get("priority", "high") == "high" else "normal"}
        # The push service keeps one pending message per Topic: the push id is the last guard
        # against a duplicate (RFC 8030 topics are at most 32 URL-safe characters).
        headers["Topic"] = (options.get("collapse_key") or message["push_id"])[:32]
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
                return Outcome("retry", "network", str(exc)[:200])
            code = response.status_code
            if code in (404, 410):
                return Outcome("token_dead", str(code), "subscription gone")
            if code in _RETRYABLE:
                return Outcome(
                    "retry", str(code), "", retry_after_seconds(response.headers.get("Retry-After"))
                )
            if code in (401, 403):
                return Outcome("config_error", str(code), "VAPID rejected")
            return Outcome("payload_error", str(code), response.text[:200])
        except requests.ConnectionError as exc:
            # Not connected: nothing was sent, so trying again cannot deliver twice.
            return Outcome("retry", "network", type(exc).__name__)
        except requests.RequestException as exc:
            # Sent, but no answer: it may have been delivered. At most once wins: no retry.
            return Outcome("payload_error", "unknown_outcome", type(exc).__name__)
        return Outcome("delivered")
