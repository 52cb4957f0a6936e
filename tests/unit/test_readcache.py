"""sync.readcache against a real Redis: hits spare the load, a change makes every entry of its
subject a miss, a fill racing with a change is never served, and without Redis the cache reads
through and refuses changes."""

from __future__ import annotations

import uuid

import pytest
from redis import Redis

from sync.readcache import CacheUnavailable, ReadCache


class Source:
    """A stand-in for the MongoDB read: counts its loads."""

    def __init__(self, value: str | None) -> None:
        self.value = value
        self.loads = 0

    def __call__(self) -> str | None:
        self.loads += 1
        return self.value


@pytest.fixture
def cache(redis_client: Redis) -> ReadCache:
    return ReadCache(redis_client, f"test-{uuid.uuid4().hex[:8]}", ttl_seconds=30)


def test_a_hit_spares_the_load_and_a_change_makes_it_a_miss(cache: ReadCache) -> None:
    source = Source("writer")
    assert [cache.get("scope", "team:a", "u1", source) for _ in range(3)] == ["writer"] * 3
    assert source.loads == 1
    with cache.changing("scope", "team:a"):
        source.value = "reader"
    assert cache.get("scope", "team:a", "u1", source) == "reader"
    assert source.loads == 2


def test_a_change_invalidates_every_field_of_its_subject_only(cache: ReadCache) -> None:
    sources = {f: Source(f"role-{f}") for f in ("u1", "u2")}
    other = Source("other")
    for _ in range(2):
        for field, source in sources.items():
            cache.get("scope", "team:a", field, source)
        cache.get("scope", "team:b", "u1", other)
    cache.invalidate("scope", "team:a")
    for field, source in sources.items():
        cache.get("scope", "team:a", field, source)
    cache.get("scope", "team:b", "u1", other)
    assert [s.loads for s in sources.values()] == [2, 2]
    assert other.loads == 1


def test_a_fill_racing_with_a_change_is_never_served(cache: ReadCache) -> None:
    def read_then_changed() -> str:
        value = "writer"  # read from MongoDB just before the change lands
        with cache.changing("scope", "team:a"):
            pass
        return value

    assert cache.get("scope", "team:a", "u1", read_then_changed) == "writer"
    assert cache.get("scope", "team:a", "u1", Source(None)) is None


def test_a_lost_generation_loses_the_entries_with_it(cache: ReadCache, redis_client: Redis) -> None:
    source = Source("writer")
    cache.get("scope", "team:a", "u1", source)
    for key in redis_client.scan_iter(match="og:cache:*:scope:team:a:gen"):
        redis_client.delete(key)  # evicted, expired, or Redis restarted without its data
    source.value = "reader"
    assert cache.get("scope", "team:a", "u1", source) == "reader"


def test_nothing_is_kept_for_a_missing_value_and_namespaces_stay_apart(
    cache: ReadCache, redis_client: Redis
) -> None:
    missing = Source(None)
    assert cache.get("key", "k1", "record", missing) is None
    assert cache.get("key", "k1", "record", missing) is None
    assert missing.loads == 2
    cache.get("key", "k1", "record", Source("one"))
    elsewhere = ReadCache(redis_client, "another-database", ttl_seconds=30)
    assert elsewhere.get("key", "k1", "record", Source("two")) == "two"


def test_first_in_answers_true_once_per_period(cache: ReadCache) -> None:
    from datetime import timedelta

    period = timedelta(minutes=1)
    assert cache.first_in("key", "k1", "used", period) is True
    assert cache.first_in("key", "k1", "used", period) is False
    assert cache.first_in("key", "k2", "used", period) is True


def test_without_redis_it_reads_through_and_refuses_changes() -> None:
    cache = ReadCache(Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1), "x", 30)
    source = Source("writer")
    assert cache.get("scope", "team:a", "u1", source) == "writer"
    assert cache.get("scope", "team:a", "u1", source) == "writer"
    assert source.loads == 2
    changed = []
    with pytest.raises(CacheUnavailable), cache.changing("scope", "team:a"):
        changed.append(True)
    assert changed == []


def test_a_ttl_of_zero_turns_it_off(redis_client: Redis) -> None:
    cache = ReadCache(redis_client, "off", ttl_seconds=0)
    source = Source("writer")
    cache.get("scope", "team:a", "u1", source)
    cache.get("scope", "team:a", "u1", source)
    assert source.loads == 2
    assert list(redis_client.scan_iter(match="og:cache:off:*")) == []
