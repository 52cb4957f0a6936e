"""Typed settings read from the environment (SPEC §5), validated once at start-up.

A missing or malformed value raises `SettingsError` naming the variable, so a process
stops before it serves or consumes anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from limits import parse_many


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is required but not set")
    return value


def _url(
    env: Mapping[str, str], name: str, schemes: tuple[str, ...], default: str | None = None
) -> str:
    value = env.get(name, "").strip() or default
    if value is None:
        raise SettingsError(f"{name} is required but not set")
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise SettingsError(
            f"{name} must be a URL with scheme {' or '.join(schemes)} and a host, got {value!r}"
        )
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = env.get(name, "").strip() or default
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _vapid_subject(env: Mapping[str, str]) -> str:
    value = env.get("VAPID_SUBJECT", "").strip()
    if env.get("VAPID_PRIVATE_KEY", "").strip() and not value.startswith(("mailto:", "https://")):
        raise SettingsError(
            "VAPID_SUBJECT must be a mailto: or https: URL when VAPID_PRIVATE_KEY is set"
        )
    return value


def _secret_file_or_value(env: Mapping[str, str], name: str) -> str | None:
    """`NAME` holds the secret itself, or `NAME_FILE` a path to it (a mounted secret)."""
    value = env.get(name, "").strip()
    path = env.get(f"{name}_FILE", "").strip()
    if value and path:
        raise SettingsError(f"set {name} or {name}_FILE, not both")
    if not path:
        return value or None
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError as exc:
        raise SettingsError(f"{name}_FILE cannot be read: {exc.strerror}") from None


def _apns(env: Mapping[str, str]) -> dict[str, str | None]:
    key = _secret_file_or_value(env, "APNS_KEY")
    names = ("APNS_KEY_ID", "APNS_TEAM_ID", "APNS_TOPIC")
    if key is None:
        return {"key": None, "key_id": None, "team_id": None, "topic": None}
    if not key.startswith("-----BEGIN PRIVATE KEY-----"):
        raise SettingsError("APNS_KEY must be the .p8 signing key (PEM, BEGIN PRIVATE KEY)")
    key_id, team_id, topic = (_required(env, name) for name in names)
    return {"key": key, "key_id": key_id, "team_id": team_id, "topic": topic}


def _fcm_service_account(env: Mapping[str, str]) -> dict[str, str] | None:
    raw = _secret_file_or_value(env, "FCM_SERVICE_ACCOUNT")
    if raw is None:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        raise SettingsError("FCM_SERVICE_ACCOUNT must be a service account JSON key") from None
    needed = ("client_email", "private_key", "token_uri", "project_id")
    if not isinstance(info, dict) or any(not isinstance(info.get(k), str) for k in needed):
        raise SettingsError(
            "FCM_SERVICE_ACCOUNT must be a service account JSON key with " + ", ".join(needed)
        )
    return info


def _rate(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    try:
        parse_many(value)
    except ValueError:
        raise SettingsError(
            f"{name} must be a rate limit like '600/minute', got {value!r}"
        ) from None
    return value


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Exact browser origins (`https://app.example.com`), comma-separated; empty means none.

    `*` is refused: the API is called with bearer tokens and server keys, and naming the web
    apps that may call it keeps every other site's scripts from reading its answers.
    """
    origins: list[str] = []
    for raw in env.get(name, "").split(","):
        value = raw.strip()
        if not value:
            continue
        if "*" in value:
            raise SettingsError(
                f"{name} lists exact origins; wildcards are not allowed, got {value!r}"
            )
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
        except ValueError:
            raise SettingsError(f"{name} has an origin with a bad port: {value!r}") from None
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or "@" in parts.netloc
            or parts.path
            or parts.query
            or parts.fragment
            or value.endswith(("?", "#"))
        ):
            raise SettingsError(
                f"{name} entries must be origins like https://app.example.com "
                f"(scheme, host, optional port; no path), got {value!r}"
            )
        origins.append(f"{parts.scheme}://{parts.netloc.lower()}")
    return tuple(dict.fromkeys(origins))


@dataclass(frozen=True)
class Settings:
    mongodb_url: str
    mongodb_database: str
    broker_url: str
    redis_url: str
    jwt_secret: str | None
    jwt_jwks_url: str | None
    jwt_issuer: str | None
    jwt_audience: str | None
    jwks_refetch_cooldown_seconds: int
    admin_api_key: str
    collections_module: str
    log_level: str
    log_format: str
    max_body_bytes: int
    proxy_hops: int  # proxies in front whose X-Forwarded-* the API trusts (0: none)
    cache_ttl_seconds: int  # Redis cache of membership and API keys (0: off)
    max_mutations_per_batch: int
    max_clock_skew_seconds: int
    batch_result_ttl_seconds: int
    task_delivery_limit: int
    gap_timeout_seconds: int
    tombstone_horizon_seconds: int
    lock_ttl_seconds: int
    stuck_batch_seconds: int
    tickle_debounce_seconds: int
    tickle_ios_debounce_seconds: int
    rate_limit_user: str
    vapid_private_key: str | None
    vapid_subject: str
    webpush_ca_file: str | None
    apns_key: str | None
    apns_key_id: str | None
    apns_team_id: str | None
    apns_topic: str | None
    apns_base_url: str
    apns_ca_file: str | None
    fcm_service_account: dict[str, str] | None
    fcm_base_url: str
    fcm_ca_file: str | None
    push_rate_limit_ios: str
    push_rate_limit_android: str
    push_rate_limit_web: str
    device_unseen_days: int
    push_retention_seconds: int
    push_send_concurrency: int
    rate_limit_key: str
    rate_limit_anonymous: str
    batch_retention_seconds: int
    housekeeping_interval_seconds: int
    due_pushes_interval_seconds: int
    expiry_interval_seconds: int
    device_prune_interval_seconds: int
    tombstone_purge_interval_seconds: int
    cors_origins: tuple[str, ...]

    @property
    def uses_jwks(self) -> bool:
        return self.jwt_jwks_url is not None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise `SettingsError` naming the first bad one."""
    env = os.environ if env is None else env

    mongodb_url = _url(env, "MONGODB_URL", ("mongodb", "mongodb+srv"))
    database = urlsplit(mongodb_url).path.lstrip("/") or "offgrid"

    jwt_secret = env.get("JWT_SECRET", "").strip() or None
    jwks_url = env.get("JWT_JWKS_URL", "").strip() or None
    issuer = audience = None
    if jwks_url is not None:
        jwks_url = _url(env, "JWT_JWKS_URL", ("http", "https"))
        issuer = _required(env, "JWT_ISSUER")
        audience = _required(env, "JWT_AUDIENCE")
    elif jwt_secret is None:
        raise SettingsError("JWT_SECRET (HS256) or JWT_JWKS_URL is required but neither is set")
    elif len(jwt_secret) < 32:
        raise SettingsError("JWT_SECRET must be at least 32 characters")

    apns = _apns(env)
    admin_api_key = _required(env, "ADMIN_API_KEY")
    if len(admin_api_key) < 24:
        raise SettingsError("ADMIN_API_KEY must be at least 24 characters")

    return Settings(
        mongodb_url=mongodb_url,
        mongodb_database=database,
        broker_url=_url(env, "BROKER_URL", ("amqp", "amqps", "pyamqp")),
        redis_url=_url(env, "REDIS_URL", ("redis", "rediss")),
        jwt_secret=jwt_secret,
        jwt_jwks_url=jwks_url,
        jwt_issuer=issuer,
        jwt_audience=audience,
        jwks_refetch_cooldown_seconds=_int(env, "JWT_JWKS_COOLDOWN", 10, minimum=1),
        admin_api_key=admin_api_key,
        collections_module=env.get("OFFGRID_COLLECTIONS", "").strip()
        or "config.example_collections",
        log_level=_choice(
            env, "LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), "INFO"
        ),
        log_format=_choice(env, "LOG_FORMAT", ("json", "console"), "json"),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", 1024 * 1024, minimum=1024),
        proxy_hops=_int(env, "PROXY_HOPS", 0, minimum=0),
        cache_ttl_seconds=_int(env, "CACHE_TTL", 30, minimum=0),
        max_mutations_per_batch=_int(env, "MAX_MUTATIONS_PER_BATCH", 1000, minimum=1),
        max_clock_skew_seconds=_int(env, "MAX_CLOCK_SKEW", 300, minimum=0),
        batch_result_ttl_seconds=_int(env, "BATCH_RESULT_TTL", 86400, minimum=60),
        task_delivery_limit=_int(env, "TASK_DELIVERY_LIMIT", 10, minimum=1),
        gap_timeout_seconds=_int(env, "GAP_TIMEOUT", 600, minimum=1),
        tombstone_horizon_seconds=_int(env, "TOMBSTONE_HORIZON", 30 * 86400, minimum=1),
        lock_ttl_seconds=_int(env, "LOCK_TTL", 30, minimum=2),
        stuck_batch_seconds=_int(env, "STUCK_BATCH_AFTER", 900, minimum=1),
        tickle_debounce_seconds=_int(env, "TICKLE_DEBOUNCE", 10, minimum=1),
        tickle_ios_debounce_seconds=_int(env, "TICKLE_IOS_DEBOUNCE", 900, minimum=1),
        vapid_private_key=env.get("VAPID_PRIVATE_KEY", "").strip() or None,
        vapid_subject=_vapid_subject(env),
        webpush_ca_file=env.get("WEBPUSH_CA_FILE", "").strip() or None,
        apns_key=apns["key"],
        apns_key_id=apns["key_id"],
        apns_team_id=apns["team_id"],
        apns_topic=apns["topic"],
        apns_base_url=_url(env, "APNS_BASE_URL", ("https",), "https://api.push.apple.com"),
        apns_ca_file=env.get("APNS_CA_FILE", "").strip() or None,
        fcm_service_account=_fcm_service_account(env),
        fcm_base_url=_url(env, "FCM_BASE_URL", ("https",), "https://fcm.googleapis.com"),
        fcm_ca_file=env.get("FCM_CA_FILE", "").strip() or None,
        # Shared by every worker (Redis); a provider's own limits are far above these.
        push_rate_limit_ios=_rate(env, "PUSH_RATE_LIMIT_IOS", "3000/second"),
        push_rate_limit_android=_rate(env, "PUSH_RATE_LIMIT_ANDROID", "3000/second"),
        push_rate_limit_web=_rate(env, "PUSH_RATE_LIMIT_WEB", "1000/second"),
        device_unseen_days=_int(env, "DEVICE_UNSEEN_DAYS", 270, minimum=1),
        push_retention_seconds=_int(env, "PUSH_RETENTION", 7 * 86400, minimum=60),
        # Sends in flight at once per worker process, each thread on its own connection.
        push_send_concurrency=_int(env, "PUSH_SEND_CONCURRENCY", 8, minimum=1),
        # Generous defaults: a syncing app pulls in bursts; tighten them per deployment.
        rate_limit_user=_rate(env, "RATE_LIMIT_USER", "3000/minute"),
        rate_limit_key=_rate(env, "RATE_LIMIT_KEY", "6000/minute"),
        rate_limit_anonymous=_rate(env, "RATE_LIMIT_ANONYMOUS", "600/minute"),
        batch_retention_seconds=_int(env, "BATCH_RETENTION", 7 * 86400, minimum=60),
        housekeeping_interval_seconds=_int(env, "HOUSEKEEPING_INTERVAL", 300, minimum=1),
        due_pushes_interval_seconds=_int(env, "DUE_PUSHES_INTERVAL", 5, minimum=1),
        expiry_interval_seconds=_int(env, "EXPIRY_INTERVAL", 3600, minimum=1),
        device_prune_interval_seconds=_int(env, "DEVICE_PRUNE_INTERVAL", 86400, minimum=1),
        tombstone_purge_interval_seconds=_int(env, "TOMBSTONE_PURGE_INTERVAL", 21600, minimum=1),
        cors_origins=_origins(env, "CORS_ORIGINS"),
    )
