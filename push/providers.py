"""The push provider of each platform, from the settings (the registry of `apns`, `fcm` and
`webpush`, which build on `push.base`)."""

from __future__ import annotations

import functools
from typing import Any

from push.apns import APNsProvider, ProviderTokens
from push.base import Provider, UnconfiguredProvider
from push.devices import PLATFORMS
from push.fcm import FCMProvider
from push.webpush import WebPushProvider


@functools.cache
def _apns_tokens(key_pem: str, key_id: str, team_id: str) -> Any:
    """One provider-token signer per process and key, whatever the number of sender threads."""
    return ProviderTokens(key_pem, key_id, team_id)


def providers_from_settings(settings: Any) -> dict[str, Provider]:
    """The provider of each platform; one without credentials is `UnconfiguredProvider`."""
    providers: dict[str, Provider] = {
        platform: UnconfiguredProvider(platform) for platform in PLATFORMS
    }
    if settings.apns_key:
        providers["ios"] = APNsProvider(
            key_pem=settings.apns_key,
            key_id=settings.apns_key_id,
            team_id=settings.apns_team_id,
            topic=settings.apns_topic,
            base_url=settings.apns_base_url,
            ca_file=settings.apns_ca_file,
            tokens=_apns_tokens(settings.apns_key, settings.apns_key_id, settings.apns_team_id),
        )
    if settings.fcm_service_account:
        providers["android"] = FCMProvider(
            settings.fcm_service_account, settings.fcm_base_url, settings.fcm_ca_file
        )
    if settings.vapid_private_key:
        providers["web"] = WebPushProvider(
            settings.vapid_private_key, settings.vapid_subject, settings.webpush_ca_file
        )
    return providers
