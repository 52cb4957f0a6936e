"""APNs: the provider client against the local APNs fake (HTTP/2, TLS, JWT and header checks),
one test per provider outcome, then end to end through a worker."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.database import Database

from push.apns import APNsProvider
from push.devices import DEVICES
from tests.push_client import register, send_and_wait


def _token() -> str:
    return secrets.token_hex(32)


def _message(**options: Any) -> dict[str, Any]:
    silent = options.pop("silent", False)
    return {
        "push_id": uuid.uuid4().hex,
        "notification": None if silent else {"title": "Build", "body": "green", "badge": 3},
        "data": {"build": 42},
        "options": {"ttl": 600, "silent": silent, **options},
        "expires_at": int(time.time()) + 600,
    }


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(apns_fake: Any) -> Iterator[Clock]:
    """One clock for the provider and the fake, so token age can be moved forward."""
    shared = Clock()
    apns_fake.clock = shared
    yield shared
    apns_fake.clock = time.time
    apns_fake.expire_tokens_before(0)


@pytest.fixture
def apns(apns_fake: Any, clock: Clock) -> Iterator[APNsProvider]:
    provider = _provider(apns_fake, clock)
    yield provider
    provider.close()


def _provider(
    fake: Any, clock: Clock, topic: str | None = None, key_pem: str | None = None
) -> APNsProvider:
    return APNsProvider(
        key_pem=key_pem or fake.key_file.read_text(),
        key_id=fake.KEY_ID,
        team_id=fake.TEAM_ID,
        topic=topic or fake.TOPIC,
        base_url=fake.origin,
        ca_file=str(fake.ca_file),
        clock=clock,
    )


def _send(apns: APNsProvider, token: str, **options: Any) -> Any:
    return apns.send({"_id": "d", "token": token, "platform": "ios"}, _message(**options))


def test_an_alert_is_delivered_with_the_headers_its_payload_needs(
    apns: APNsProvider, apns_fake: Any
) -> None:
    token = _token()
    message = _message(collapse_key="builds")
    assert apns.send({"token": token}, message).kind == "delivered"
    [got] = apns_fake.received[token]
    headers, payload = got["headers"], got["payload"]
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-topic"] == apns_fake.TOPIC
    assert headers["apns-expiration"] == str(message["expires_at"])
    assert headers["apns-collapse-id"] == "builds"
    assert headers["apns-id"].replace("-", "") == message["push_id"]
    assert payload == {
        "aps": {"alert": {"title": "Build", "body": "green"}, "badge": 3},
        "build": 42,
    }


def test_a_silent_push_is_background_priority_5_with_content_available_and_push_id_collapse(
    apns: APNsProvider, apns_fake: Any
) -> None:
    token = _token()
    message = _message(silent=True)
    assert apns.send({"token": token}, message).kind == "delivered"
    [got] = apns_fake.received[token]
    assert got["headers"]["apns-push-type"] == "background"
    assert got["headers"]["apns-priority"] == "5"
    # Without a collapse key the push id is the collapse id: a duplicate replaces, never adds.
    assert got["headers"]["apns-collapse-id"] == message["push_id"]
    assert got["payload"]["aps"] == {"content-available": 1}


def test_the_provider_token_is_reused_for_40_minutes_then_renewed(
    apns: APNsProvider, apns_fake: Any, clock: Clock
) -> None:
    start = len(apns_fake.provider_tokens)
    for _ in range(3):
        assert _send(apns, _token()).kind == "delivered"
    clock.now += 39 * 60
    assert _send(apns, _token()).kind == "delivered"
    clock.now += 2 * 60  # 41 minutes after it was made: past our 40, before Apple's 60
    assert _send(apns, _token()).kind == "delivered"
    used = apns_fake.provider_tokens[start:]
    assert len(used) == 5
    assert len(set(used[:4])) == 1  # one token for the first 39 minutes
    assert used[4] != used[0]


def test_expired_provider_token_gets_a_fresh_token_and_one_retry(
    apns: APNsProvider, apns_fake: Any, clock: Clock
) -> None:
    assert _send(apns, _token()).kind == "delivered"
    apns_fake.expire_tokens_before(clock.now + 1)
    clock.now += 2
    token = _token()
    assert _send(apns, token).kind == "delivered"
    assert (token, "ExpiredProviderToken") in apns_fake.rejected
    assert len(apns_fake.received[token]) == 1


def test_410_unregistered_is_a_dead_token_with_apples_timestamp(
    apns: APNsProvider, apns_fake: Any
) -> None:
    token = _token()
    apns_fake.unregister(token, 1_700_000_000_000)
    outcome = _send(apns, token)
    assert (outcome.kind, outcome.reason) == ("token_dead", "Unregistered")
    assert outcome.dead_since == datetime.fromtimestamp(1_700_000_000, UTC)


def test_bad_device_token_is_dead_and_sent_once(apns: APNsProvider, apns_fake: Any) -> None:
    before = list(apns_fake.rejected)
    outcome = _send(apns, "ABCDEFXYZ")  # not hex: APNs answers 400 BadDeviceToken
    assert (outcome.kind, outcome.reason) == ("token_dead", "BadDeviceToken")
    assert apns_fake.rejected[len(before) :] == [("ABCDEFXYZ", "BadDeviceToken")]


def test_device_token_not_for_topic_is_a_configuration_error_that_prunes_nothing(
    apns_fake: Any, clock: Clock
) -> None:
    provider = _provider(apns_fake, clock, topic="com.example.other-app")
    try:
        outcome = _send(provider, _token())
    finally:
        provider.close()
    assert (outcome.kind, outcome.reason) == ("config_error", "DeviceTokenNotForTopic")


def test_a_wrong_signing_key_is_a_configuration_error(apns_fake: Any, clock: Clock) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    provider = _provider(apns_fake, clock, key_pem=other.decode())
    try:
        outcome = _send(provider, _token())
    finally:
        provider.close()
    assert (outcome.kind, outcome.reason) == ("config_error", "InvalidProviderToken")


@pytest.mark.parametrize(
    ("answer", "reason", "retry_after"),
    [
        ((429, "TooManyRequests"), "TooManyRequests", None),
        ((429, "TooManyRequests", 7), "TooManyRequests", 7.0),
        ((500, "InternalServerError"), "InternalServerError", None),
        ((503, "ServiceUnavailable"), "ServiceUnavailable", None),
    ],
)
def test_throttling_and_server_errors_are_retried_later(
    apns: APNsProvider, apns_fake: Any, answer: tuple[Any, ...], reason: str, retry_after: Any
) -> None:
    token = _token()
    apns_fake.script[token] = [answer]
    outcome = _send(apns, token)
    assert (outcome.kind, outcome.reason, outcome.retry_after) == ("retry", reason, retry_after)
    assert token not in apns_fake.received


def test_a_payload_over_4kb_is_a_payload_error_and_never_sent(
    apns: APNsProvider, apns_fake: Any
) -> None:
    token = _token()
    message = _message()
    message["data"] = {"blob": "x" * 5000}
    outcome = apns.send({"token": token}, message)
    assert (outcome.kind, outcome.reason) == ("payload_error", "PayloadTooLarge")
    assert token not in apns_fake.received


def test_goaway_moves_sending_to_a_new_connection_without_losing_or_doubling(
    apns: APNsProvider, apns_fake: Any
) -> None:
    tokens = [_token() for _ in range(6)]
    apns_fake.script[tokens[2]] = ["goaway"]  # answered, then the connection is shut
    connections = apns_fake.server.connections
    outcomes = [_send(apns, token).kind for token in tokens]
    assert outcomes == ["delivered"] * 6
    assert [len(apns_fake.received[token]) for token in tokens] == [1] * 6
    assert apns_fake.server.connections == connections + 2  # the first, and one after GOAWAY


# -- end to end: a real worker, the APNs fake, the registry --


def _register(client: Any, make_token: Any, user: str, token: str) -> str:
    return register(client, make_token, user, token, "ios")


def _push_and_wait(client: Any, admin: dict[str, str], user: str, **options: Any) -> Any:
    body = {
        "audience": {"users": [user]},
        "notification": {"title": "Hi", "body": "there"},
        "options": {"ttl": 600, **options},
    }
    return send_and_wait(client, admin, body)


@pytest.mark.usefixtures("worker")
def test_410_prunes_a_device_unless_it_registered_again_after_the_410(
    client: Any, admin: dict[str, str], make_token: Any, apns_fake: Any, db: Database
) -> None:
    user = f"i-{uuid.uuid4().hex[:8]}"
    stale, fresh = _token(), _token()
    stale_id = _register(client, make_token, user, stale)
    fresh_id = _register(client, make_token, user, fresh)
    now = datetime.now(UTC)
    # Apple saw both tokens die an hour ago; `fresh` was registered again since (reinstall).
    died = int((now - timedelta(hours=1)).timestamp() * 1000)
    apns_fake.unregister(stale, died)
    apns_fake.unregister(fresh, died)
    db[DEVICES].update_one({"_id": stale_id}, {"$set": {"registered_at": now - timedelta(days=2)}})
    status = _push_and_wait(client, admin, user)
    assert status["counts"]["invalid"] == 2
    assert db[DEVICES].count_documents({"_id": stale_id}) == 0
    assert db[DEVICES].count_documents({"_id": fresh_id}) == 1


@pytest.mark.usefixtures("worker")
def test_a_throttled_ios_send_is_redelivered_and_arrives_once(
    client: Any, admin: dict[str, str], make_token: Any, apns_fake: Any, db: Database
) -> None:
    user = f"i-{uuid.uuid4().hex[:8]}"
    token = _token()
    _register(client, make_token, user, token)
    apns_fake.script[token] = [(429, "TooManyRequests", 1), (503, "ServiceUnavailable")]
    status = _push_and_wait(client, admin, user)
    assert status["counts"] == {"targeted": 1, "sent": 1, "failed": 0, "invalid": 0, "pending": 0}
    assert len(apns_fake.received[token]) == 1
    assert [r for t, r in apns_fake.rejected if t == token] == [
        "TooManyRequests",
        "ServiceUnavailable",
    ]


@pytest.mark.usefixtures("worker")
def test_goaway_mid_chunk_delivers_every_device_exactly_once(
    client: Any, admin: dict[str, str], make_token: Any, apns_fake: Any, db: Database
) -> None:
    user = f"i-{uuid.uuid4().hex[:8]}"
    tokens = [_token() for _ in range(8)]
    for token in tokens:
        _register(client, make_token, user, token)
    for token in tokens[::3]:
        apns_fake.script[token] = ["goaway"]
    status = _push_and_wait(client, admin, user)
    assert status["counts"] == {"targeted": 8, "sent": 8, "failed": 0, "invalid": 0, "pending": 0}
    assert [len(apns_fake.received[token]) for token in tokens] == [1] * 8


@pytest.mark.usefixtures("worker")
def test_push_outcomes_are_counted_by_reason_in_metrics(
    client: Any, admin: dict[str, str], make_token: Any, apns_fake: Any
) -> None:
    user = f"i-{uuid.uuid4().hex[:8]}"
    dead = _token()
    _register(client, make_token, user, dead)
    _register(client, make_token, user, _token())
    apns_fake.unregister(dead, int(time.time() * 1000) + 60_000)
    _push_and_wait(client, admin, user)
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        'offgrid_push_outcomes_total{outcome="token_dead",platform="ios",reason="Unregistered"}'
        in text
    )
    assert 'offgrid_push_outcomes_total{outcome="delivered",platform="ios",reason="200"}' in text


def test_sender_threads_share_one_provider_token(settings: Any) -> None:
    """Apple refuses a key whose token changes too often: the sender threads of a process,
    asking for their providers at once, sign one token between them."""
    import threading

    from push.providers import providers_from_settings

    tokens: list[str] = []

    def sender() -> None:
        tokens.append(providers_from_settings(settings)["ios"].provider_token())

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tokens) == 4 and len(set(tokens)) == 1


def test_many_sends_share_one_connection_and_keep_their_own_answers(
    apns: APNsProvider, apns_fake: Any
) -> None:
    """A group goes out at once as streams of one connection; each device gets its own
    outcome, whatever order the answers come back in."""
    tokens = [_token() for _ in range(60)]
    apns_fake.unregister(tokens[7], int(time.time() * 1000))
    apns_fake.script[tokens[30]] = [(429, "TooManyRequests", 3)]
    connections = apns_fake.server.connections
    devices = [{"_id": f"d{n}", "token": token} for n, token in enumerate(tokens)]
    outcomes = apns.send_many(devices, _message())
    assert apns_fake.server.connections == connections + 1
    kinds = [outcome.kind for outcome in outcomes]
    assert kinds[7] == "token_dead" and outcomes[30].retry_after == 3
    assert kinds[:7] + kinds[8:30] + kinds[31:] == ["delivered"] * 58
    assert all(
        len(apns_fake.received.get(t, [])) == (n not in (7, 30)) for n, t in enumerate(tokens)
    )


@pytest.mark.usefixtures("worker")
def test_a_worker_killed_mid_group_never_sends_a_device_twice(
    client: Any, admin: dict[str, str], db: Database, apns_fake: Any, redis_client: Any
) -> None:
    """The worker dies right after its first group went out, before any receipt: the group's
    devices were claimed, so the redelivered chunk sends them nothing again; only that group
    (the sends in flight) can be lost, and it counts as failed, never as sent."""
    from push import devices
    from push.delivery import GROUP
    from sync.faults import CRASH_KEY

    user = f"k-{uuid.uuid4().hex[:8]}"
    tokens = [_token() for _ in range(GROUP + 100)]
    for token in tokens:
        devices.register(db, user=user, platform="ios", token=token)
    redis_client.set(CRASH_KEY, "push_after_send")
    status = _push_and_wait(client, admin, user)
    assert redis_client.get(CRASH_KEY) is None, "the armed crash never happened"
    received = [len(apns_fake.received.get(token, [])) for token in tokens]
    assert max(received) == 1
    assert sum(received) >= len(tokens) - GROUP
    counts = status["counts"]
    assert (counts["targeted"], counts["pending"]) == (len(tokens), 0)
    assert counts["sent"] + counts["failed"] == len(tokens)
    assert counts["failed"] >= 1
    assert counts["sent"] <= sum(received)
