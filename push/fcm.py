"""FCM HTTP v1 provider: `POST /v1/projects/<project>/messages:send` over HTTP/2, with an
OAuth2 access token from the service account (google-auth; refreshed before it expires).

- Data values must be strings in FCM: strings pass as they are, anything else as JSON.
- The collapse key is set only when the push names one: Android keeps at most four distinct
  collapse keys per device, so one per push would drop messages to an offline phone. The
  displayed notification's `tag` is the push id instead, so a duplicate replaces, never adds.
- Error bodies carry an `FcmError` detail whose `errorCode` decides the outcome.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import httpx
from google.oauth2 import service_account

from push.base import (
    Outcome,
    attempt,
    http2_client,
    json_or_empty,
    retry_after_seconds,
    session_for,
)

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
QUOTA_WAIT = 60.0  # FCM: wait at least a minute after QUOTA_EXCEEDED without retry-after
INVALID_TOKEN_MESSAGE = "registration token"


def data_strings(data: dict[str, Any] | None) -> dict[str, str]:
    return {
        key: value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        for key, value in (data or {}).items()
    }


def build_message(token: str, message: dict[str, Any]) -> dict[str, Any]:
    options = message["options"]
    notification = message.get("notification") or {}
    silent = bool(options.get("silent")) or not notification
    android: dict[str, Any] = {
        "priority": "HIGH" if options.get("priority", "high") == "high" else "NORMAL",
        "ttl": f"{int(options.get('ttl', 86400))}s",
    }
    if options.get("collapse_key"):
        android["collapse_key"] = options["collapse_key"]
    body: dict[str, Any] = {"token": token}
    data = data_strings(message.get("data"))
    if data:
        body["data"] = data
    if not silent:
        body["notification"] = {
            key: notification[key] for key in ("title", "body", "image") if notification.get(key)
        }
        shown: dict[str, Any] = {"tag": message["push_id"]}
        if notification.get("sound"):
            shown["sound"] = notification["sound"]
        if notification.get("category"):
            shown["click_action"] = notification["category"]
        if notification.get("badge") is not None:
            shown["notification_count"] = int(notification["badge"])
        android["notification"] = shown
    body["android"] = android
    return {"message": body}


def _error_code(answer: dict[str, Any]) -> tuple[str, str]:
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        return "", ""
    code = str(error.get("status") or "")
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            code = str(detail["errorCode"])
    return code, str(error.get("message") or "")


class FCMProvider:
    def __init__(
        self,
        service_account_info: dict[str, str],
        base_url: str,
        ca_file: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._credentials = service_account.Credentials.from_service_account_info(
            service_account_info, scopes=[SCOPE]
        )
        self._url = (
            f"{base_url.rstrip('/')}/v1/projects/{service_account_info['project_id']}/messages:send"
        )
        self._auth_request = google.auth.transport.requests.Request(session_for(ca_file))
        self._lock = threading.Lock()
        self._client = http2_client(ca_file, timeout)

    def access_token(self, fresh: bool = False) -> str:
        with self._lock:
            if fresh or not self._credentials.valid:
                self._credentials.refresh(self._auth_request)
            return str(self._credentials.token)

    def send(self, device: dict[str, Any], message: dict[str, Any]) -> Outcome:
        try:
            token = self.access_token()
        except google.auth.exceptions.TransportError as exc:
            return Outcome("retry", "oauth_network", str(exc)[:200])
        except google.auth.exceptions.RefreshError as exc:
            return Outcome("config_error", "oauth_refused", str(exc)[:200])
        body = build_message(device["token"], message)
        outcome = self._post(body, token)
        if outcome.reason == "UNAUTHENTICATED":
            # The access token was refused (revoked, or expired early): a new one, one retry.
            try:
                outcome = self._post(body, self.access_token(fresh=True))
            except google.auth.exceptions.GoogleAuthError as exc:
                return Outcome("config_error", "oauth_refused", str(exc)[:200])
        return outcome

    def _post(self, body: dict[str, Any], token: str) -> Outcome:
        response = attempt(
            lambda: self._client.post(
                self._url, json=body, headers={"authorization": f"Bearer {token}"}
            )
        )
        return response if isinstance(response, Outcome) else self._outcome(response)

    def _outcome(self, response: httpx.Response) -> Outcome:
        status = response.status_code
        if status == 200:
            return Outcome("delivered", "200")
        code, text = _error_code(json_or_empty(response))
        code = code or str(status)
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        if code == "UNREGISTERED":
            return Outcome("token_dead", code, text[:200])
        if code == "INVALID_ARGUMENT":
            if INVALID_TOKEN_MESSAGE in text.lower():
                return Outcome("token_dead", code, text[:200])
            return Outcome("payload_error", code, text[:200])
        if code == "QUOTA_EXCEEDED" or status == 429:
            return Outcome("retry", code, text[:200], retry_after or QUOTA_WAIT)
        if code in ("UNAVAILABLE", "INTERNAL") or status >= 500:
            return Outcome("retry", code, text[:200], retry_after)
        if status == 401 and code == "UNAUTHENTICATED":
            return Outcome("config_error", code, text[:200])  # send() refreshes and retries
        if code in ("SENDER_ID_MISMATCH", "THIRD_PARTY_AUTH_ERROR", "PERMISSION_DENIED"):
            return Outcome("config_error", code, text[:200])
        if status in (401, 403, 404):
            return Outcome("config_error", code, text[:200])
        return Outcome("payload_error", code, text[:200])

    def close(self) -> None:
        self._client.close()
