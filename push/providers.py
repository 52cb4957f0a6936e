"""The push provider of each platform, from the settings (the registry of `apns`, `fcm` and
`webpush`, which build on `push.base`)."""

from __future__ import annotations

import functools
import threading
from typing import Any

from push.apns import APNsProvider, ProviderTokens
from push.base import Provider, UnconfiguredProvider
from push.devices import PLATFORMS
from push.fcm import FCMProvider
from push.webpush import WebPushProvider

_made = threading.Lock()


def _apns(
    key_pem: str, key_id: str, team_id: str, topic: str, base_url: str, ca_file: str | None
) -> APNsProvider:
    """One APNs provider per process and settings, shared by the sender threads: its one
    connection carries every send of the process (and its provider token is signed once)."""
    with _made:  # sender threads ask at once when a worker starts
        return _apns_made(key_pem, key_id, team_id, topic, base_url, ca_file)


@functools.cache
def _apns_made(
    key_pem: str, key_id: str, team_id: str, topic: str, base_url: str, ca_file: str | None
) -> APNsProvider:
    return APNsProvider(
        key_pem=key_pem,
        key_id=key_id,
        team_id=team_id,
        topic=topic,
        base_url=base_url,
        ca_file=ca_file,
        tokens=ProviderTokens(key_pem, key_id, team_id),
    )


def providers_from_settings(settings: Any) -> dict[str, Provider]:
    """The provider of each platform; one without credentials is `UnconfiguredProvider`."""
    providers: dict[str, Provider] = {
        platform: UnconfiguredProvider(platform) for platform in PLATFORMS
    }
    if settings.apns_key:
        providers["ios"] = _apns(
            settings.apns_key, settings.apns_key_id, settings.apns_team_id,
            settings.apns_topic, settings.apns_base_url, settings.apns_ca_file,
        )  # fmt: skip
    if settings.fcm_service_account:
        providers["android"] = FCMProvider(
            settings.fcm_service_account, settings.fcm_base_url, settings.fcm_ca_file
        )
    if settings.vapid_private_key:
        providers["web"] = WebPushProvider(
            settings.vapid_private_key, settings.vapid_subject, settings.webpush_ca_file
        )
    return providers
