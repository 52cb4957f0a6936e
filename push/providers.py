"""Push providers behind one interface; each provider response maps to one outcome.

Outcomes: `delivered`, `retry` (later, honouring `retry_after`), `token_dead` (prune the
device), `config_error` (our credentials or settings), `payload_error` (this message).
APNs, FCM and Web Push clients plug in here; a platform without credentials configured gets
`UnconfiguredProvider`, whose every send is a `config_error`, so a push to it ends `failed`
with that reason instead of hanging.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

OUTCOMES = ("delivered", "retry", "token_dead", "config_error", "payload_error")


@dataclass(frozen=True)
class Outcome:
    kind: str
    reason: str = ""
    retry_after: float | None = None


class Provider(Protocol):
    def send(self, device: dict[str, Any], message: dict[str, Any]) -> Outcome: ...


class UnconfiguredProvider:
    def __init__(self, platform: str) -> None:
        self.platform = platform

    def send(self, device: dict[str, Any], message: dict[str, Any]) -> Outcome:
        return Outcome("config_error", f"no credentials configured for {self.platform}")


def providers_from_settings(settings: Any) -> dict[str, Provider]:
    """The provider of each platform; one without credentials is `UnconfiguredProvider`.
    APNs and FCM clients are not wired yet."""
    providers: dict[str, Provider] = {
        platform: UnconfiguredProvider(platform) for platform in ("ios", "android", "web")
    }
    if settings.vapid_private_key:
        from push.webpush import WebPushProvider

        providers["web"] = WebPushProvider(
            settings.vapid_private_key, settings.vapid_subject, settings.webpush_ca_file
        )
    return providers
