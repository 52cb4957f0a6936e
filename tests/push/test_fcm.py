"""FCM HTTP v1: the provider client against the local FCM fake (OAuth2 service-account grant,
HTTP/2 sends, FCM's real error bodies), one test per outcome, then end to end."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo.database import Database

from push.devices import DEVICES
from push.fcm import FCMProvider
from tests.push_client import register, send_and_wait


def _token() -> str:
    return secrets.token_urlsafe(48)


def _message(**options: Any) -> dict[str, Any]:
    silent = options.pop("silent", False)
    return {
        "push_id": uuid.uuid4().hex,
        "notification": None if silent else {"title": "Build", "body": "green", "sound": "ping"},
        "data": {"build": 42, "branch": "main", "tags": ["a"]},
        "options": {"ttl": 600, "silent": silent, **options},
        "expires_at": int(time.time()) + 600,
    }


@pytest.fixture
def fcm(fcm_fake: Any) -> Iterator[FCMProvider]:
    provider = FCMProvider(fcm_fake.service_account(), fcm_fake.origin, str(fcm_fake.ca_file))
    yield provider
    provider.close()


def _send(fcm: FCMProvider, token: str, **options: Any) -> Any:
    return fcm.send({"token": token}, _message(**options))


def test_a_notification_is_delivered_with_string_data_and_push_id_tag(
    fcm: FCMProvider, fcm_fake: Any
) -> None:
    token = _token()
    message = _message(collapse_key="builds", priority="normal")
    assert fcm.send({"token": token}, message).kind == "delivered"
    [got] = fcm_fake.received[token]
    assert got["data"] == {"build": "42", "branch": "main", "tags": '["a"]'}
    assert got["notification"] == {"title": "Build", "body": "green"}
    assert got["android"] == {
        "priority": "NORMAL",
        "ttl": "600s",
        "collapse_key": "builds",
        "notification": {"tag": message["push_id"], "sound": "ping"},
    }


def test_a_silent_push_is_a_data_message_without_a_collapse_key(
    fcm: FCMProvider, fcm_fake: Any
) -> None:
    token = _token()
    assert _send(fcm, token, silent=True).kind == "delivered"
    [got] = fcm_fake.received[token]
    assert "notification" not in got
    # One collapse key per push would let Android drop messages past its four-key limit.
    assert "collapse_key" not in got["android"]
    assert got["android"]["priority"] == "HIGH"


def test_the_access_token_is_fetched_once_and_reused(fcm: FCMProvider, fcm_fake: Any) -> None:
    before = fcm_fake.token_requests
    for _ in range(3):
        assert _send(fcm, _token()).kind == "delivered"
    assert fcm_fake.token_requests == before + 1
    assert fcm_fake.assertion_errors == []


def test_a_refused_access_token_is_renewed_and_the_send_retried_once(
    fcm: FCMProvider, fcm_fake: Any
) -> None:
    assert _send(fcm, _token()).kind == "delivered"
    fcm_fake.revoke_all()
    before = fcm_fake.token_requests
    token = _token()
    assert _send(fcm, token).kind == "delivered"
    assert fcm_fake.token_requests == before + 1
    assert len(fcm_fake.received[token]) == 1


def test_unregistered_prunes(fcm: FCMProvider, fcm_fake: Any) -> None:
    token = _token()
    fcm_fake.unregistered.add(token)
    outcome = _send(fcm, token)
    assert (outcome.kind, outcome.reason) == ("token_dead", "UNREGISTERED")


def test_invalid_argument_prunes_only_for_the_invalid_token_message(
    fcm: FCMProvider, fcm_fake: Any
) -> None:
    outcome = _send(fcm, "not a token!")
    assert (outcome.kind, outcome.reason) == ("token_dead", "INVALID_ARGUMENT")
    assert "registration token" in outcome.detail
    token = _token()
    fcm_fake.script[token] = [("INVALID_ARGUMENT", None)]  # about the message, not the token
    outcome = _send(fcm, token)
    assert (outcome.kind, outcome.reason) == ("payload_error", "INVALID_ARGUMENT")


@pytest.mark.parametrize(
    ("code", "retry_after", "expected_wait"),
    [
        ("QUOTA_EXCEEDED", 17, 17.0),
        ("QUOTA_EXCEEDED", None, 60.0),  # FCM: at least a minute when it does not say
        ("UNAVAILABLE", None, None),
        ("UNAVAILABLE", 5, 5.0),
        ("INTERNAL", None, None),
    ],
)
def test_quota_and_server_errors_are_retried_after_the_right_wait(
    fcm: FCMProvider, fcm_fake: Any, code: str, retry_after: Any, expected_wait: Any
) -> None:
    token = _token()
    fcm_fake.script[token] = [(code, retry_after)]
    outcome = _send(fcm, token)
    assert (outcome.kind, outcome.reason, outcome.retry_after) == ("retry", code, expected_wait)
    assert token not in fcm_fake.received


@pytest.mark.parametrize("code", ["SENDER_ID_MISMATCH", "THIRD_PARTY_AUTH_ERROR"])
def test_sender_and_auth_mismatches_are_configuration_errors(
    fcm: FCMProvider, fcm_fake: Any, code: str
) -> None:
    token = _token()
    fcm_fake.script[token] = [(code, None)]
    outcome = _send(fcm, token)
    assert (outcome.kind, outcome.reason) == ("config_error", code)


def test_a_service_account_the_token_endpoint_refuses_is_a_configuration_error(
    fcm_fake: Any,
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    account = fcm_fake.service_account()
    account["private_key"] = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    provider = FCMProvider(account, fcm_fake.origin, str(fcm_fake.ca_file))
    try:
        outcome = _send(provider, _token())
    finally:
        provider.close()
    assert (outcome.kind, outcome.reason) == ("config_error", "oauth_refused")


# -- end to end through a worker --


@pytest.mark.usefixtures("worker")
def test_an_fcm_quota_answer_is_waited_out_then_delivered_once_and_dead_tokens_pruned(
    client: Any, admin: dict[str, str], make_token: Any, fcm_fake: Any, db: Database
) -> None:
    user = f"a-{uuid.uuid4().hex[:8]}"
    busy, dead = _token(), _token()
    ids = {token: register(client, make_token, user, token, "android") for token in (busy, dead)}
    fcm_fake.script[busy] = [("QUOTA_EXCEEDED", 1)]
    fcm_fake.unregistered.add(dead)
    body = {"audience": {"users": [user]}, "data": {"n": 1}, "options": {"ttl": 600}}
    status = send_and_wait(client, admin, body)
    assert status["counts"] == {"targeted": 2, "sent": 1, "failed": 0, "invalid": 1, "pending": 0}
    assert fcm_fake.received[busy] == [
        {"token": busy, "data": {"n": "1"}, "android": {"priority": "HIGH", "ttl": "600s"}}
    ]
    assert db[DEVICES].count_documents({"_id": ids[dead]}) == 0
    assert db[DEVICES].count_documents({"_id": ids[busy]}) == 1
