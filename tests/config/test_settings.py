"""Settings are validated once; a missing or malformed value stops start-up, naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "MONGODB_URL": "mongodb://127.0.0.1:27017/app",
    "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "JWT_SECRET": "s" * 32,
    "ADMIN_API_KEY": "k" * 32,
}


def test_good_environment_loads_with_defaults() -> None:
    settings = load_settings(GOOD)
    assert settings.mongodb_database == "app"
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.max_mutations_per_batch == 1000
    assert settings.max_clock_skew_seconds == 300
    assert settings.uses_jwks is False


def test_database_defaults_to_offgrid() -> None:
    assert (
        load_settings({**GOOD, "MONGODB_URL": "mongodb://db:27017"}).mongodb_database == "offgrid"
    )


@pytest.mark.parametrize("name", ["MONGODB_URL", "BROKER_URL", "REDIS_URL", "ADMIN_API_KEY"])
def test_missing_required_setting_is_named(name: str) -> None:
    env = {k: v for k, v in GOOD.items() if k != name}
    with pytest.raises(SettingsError, match=name):
        load_settings(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MONGODB_URL", "postgres://x/y"),
        ("BROKER_URL", "not a url"),
        ("REDIS_URL", "redis://"),
        ("MAX_BODY_BYTES", "lots"),
        ("MAX_CLOCK_SKEW", "-5"),
        ("LOG_LEVEL", "LOUD"),
        ("JWT_SECRET", "short"),
        ("JWT_JWKS_URL", "ftp://keys"),
    ],
)
def test_malformed_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({**GOOD, name: value})


def test_jwt_needs_a_secret_or_a_jwks_url() -> None:
    env = {k: v for k, v in GOOD.items() if k != "JWT_SECRET"}
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        load_settings(env)


def test_jwks_needs_issuer_and_audience() -> None:
    env = {**GOOD, "JWT_JWKS_URL": "https://id.example.com/.well-known/jwks.json"}
    with pytest.raises(SettingsError, match="JWT_ISSUER"):
        load_settings(env)
    settings = load_settings({**env, "JWT_ISSUER": "https://id.example.com/", "JWT_AUDIENCE": "a"})
    assert settings.uses_jwks is True


def _start(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    ours = {*GOOD, "FLOWER_BASIC_AUTH", "JWT_JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE"}
    clean = {k: v for k, v in os.environ.items() if k not in ours}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["-c", "from api import create_app; create_app()"], id="api"),
        pytest.param(
            ["-m", "celery", "-A", "workers.celery_app:celery_app", "worker", "--pool=solo"],
            id="worker",
        ),
    ],
)
def test_processes_refuse_to_start_without_a_setting(args: list[str]) -> None:
    env = {k: v for k, v in GOOD.items() if k != "REDIS_URL"}
    result = _start(args, env)
    assert result.returncode != 0
    assert "REDIS_URL is required" in result.stderr


def test_flower_refuses_to_start_without_basic_auth() -> None:
    result = _start(["-m", "workers.flower"], GOOD)
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH" in result.stderr


P8 = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"APNS_KEY": P8}, "APNS_KEY_ID"),
        ({"APNS_KEY": P8, "APNS_KEY_ID": "K", "APNS_TEAM_ID": "T"}, "APNS_TOPIC"),
        ({"APNS_KEY": "not a key"}, "APNS_KEY"),
        ({"APNS_KEY": P8, "APNS_KEY_FILE": "/etc/key.p8"}, "APNS_KEY_FILE"),
        ({"APNS_KEY_FILE": "/nonexistent/AuthKey.p8"}, "APNS_KEY_FILE"),
        ({"FCM_SERVICE_ACCOUNT": "{not json"}, "FCM_SERVICE_ACCOUNT"),
        ({"FCM_SERVICE_ACCOUNT": '{"client_email": "a@b"}'}, "private_key"),
        ({"APNS_BASE_URL": "http://api.push.apple.com"}, "APNS_BASE_URL"),
        ({"PUSH_RATE_LIMIT_IOS": "fast"}, "PUSH_RATE_LIMIT_IOS"),
    ],
)
def test_push_provider_settings_are_checked_at_start_up(extra: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings({**GOOD, **extra})


def test_a_platform_without_credentials_fails_its_sends_as_configuration_errors() -> None:
    from push.providers import providers_from_settings

    providers = providers_from_settings(load_settings(GOOD))
    for platform in ("ios", "android", "web"):
        outcome = providers[platform].send({"token": "t"}, {"push_id": "p", "options": {}})
        assert (outcome.kind, outcome.reason) == ("config_error", "unconfigured")


def test_cors_is_off_unless_origins_are_listed() -> None:
    assert load_settings(GOOD).cors_origins == ()
    listed = load_settings(
        {**GOOD, "CORS_ORIGINS": " https://App.Example.com, http://localhost:3000 ,,"}
    )
    assert listed.cors_origins == ("https://app.example.com", "http://localhost:3000")


@pytest.mark.parametrize(
    "value",
    [
        "*",
        "https://*.example.com",
        "app.example.com",
        "ftp://app.example.com",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://app.example.com?x=1",
        "https://user@app.example.com",
        "https://app.example.com:port",
        "https://ok.example.com, null",
    ],
)
def test_cors_origins_must_be_exact_http_origins(value: str) -> None:
    with pytest.raises(SettingsError, match="CORS_ORIGINS"):
        load_settings({**GOOD, "CORS_ORIGINS": value})
