"""The query service's kept API keys (services/query/keys.py): what may be answered without a lookup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.query.caching import Versions
from services.query.keys import KnownKeys
from shared.auth import Principal

KEY = "d06_0123456789ab_s3cr3t-s3cr3t-s3cr3t-s3cr3t"
READER = Principal("0123456789ab", frozenset({"read"}), "legacy", "80")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def known(*, listening: bool = True, ttl: float = 0.25) -> tuple[KnownKeys, Clock]:
    versions = Versions()
    if listening:
        versions.start()
    clock = Clock()
    return KnownKeys(versions, ttl=ttl, clock=clock), clock


def test_a_key_looked_up_is_known_until_api_keys_announces_a_change() -> None:
    keys, clock = known()
    assert keys.get(KEY) is None
    keys.put(KEY, READER, keys.generation)
    clock.now = 3600.0  # while listening, time alone changes nothing
    assert keys.get(KEY) == READER
    keys.forget()
    assert keys.get(KEY) is None


def test_the_right_id_with_a_wrong_secret_is_never_answered_from_memory() -> None:
    keys, _ = known()
    keys.put(KEY, READER, keys.generation)
    assert keys.get(KEY[:-1] + "X") is None
    assert keys.get("d06_0123456789ab") is None and keys.get("nonsense") is None


def test_a_lookup_that_raced_a_change_is_not_kept() -> None:
    keys, _ = known()
    started = keys.generation
    keys.forget()  # the key was revoked while its row was being read
    keys.put(KEY, READER, started)
    assert keys.get(KEY) is None


def test_an_expiry_is_checked_at_every_use() -> None:
    keys, _ = known()

    def expiring(at: datetime) -> Principal:
        return Principal(READER.key_id, READER.roles, READER.scope_edition, READER.scope_code, expires_at=at)

    keys.put(KEY, expiring(datetime.now(UTC) + timedelta(hours=1)), keys.generation)
    assert keys.get(KEY) is not None
    keys.put(KEY, expiring(datetime.now(UTC) - timedelta(seconds=1)), keys.generation)  # its hour has passed
    assert keys.get(KEY) is None


def test_without_announcements_a_key_is_kept_the_ttl_at_most() -> None:
    keys, clock = known(listening=False, ttl=0.25)
    keys.put(KEY, READER, keys.generation)
    clock.now = 0.2
    assert keys.get(KEY) == READER
    clock.now = 0.25
    assert keys.get(KEY) is None


def test_nothing_is_kept_with_a_ttl_of_zero_and_no_announcements() -> None:
    keys, _ = known(listening=False, ttl=0.0)
    keys.put(KEY, READER, keys.generation)
    assert keys.get(KEY) is None


def test_anonymous_readers_are_not_kept_and_memory_is_bounded() -> None:
    keys, _ = known()
    keys.put(KEY, Principal(None, frozenset({"read"}), None, "VN"), keys.generation)
    assert keys.get(KEY) is None
    keys.max_keys = 2
    for n in range(5):
        token = f"d06_{n:012x}_secret"
        keys.put(token, Principal(f"{n:012x}", frozenset({"read"}), None, "VN"), keys.generation)
        assert keys.get(token) is not None
    assert len(keys._keys) <= 2
