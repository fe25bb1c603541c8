"""The pure parts of the defences: token buckets, echo of hostile text, text hygiene, scope containment."""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
import pytest

from services.ingest.body import parse_body
from shared.auth import Principal, key_id_of, new_key
from shared.errors import ValidationFailed, location, problem_bytes, safe_echo
from shared.hierarchy import Hierarchy, Unit
from shared.limits import RateLimiter, unsafe_character


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.acquire("k") for _ in range(3)] == [0, 0, 0]
    wait = limiter.acquire("k")
    assert wait == pytest.approx(0.5) and RateLimiter.retry_after(wait) == "1"
    assert limiter.acquire("other") == 0  # every key has its own bucket
    clock.now += 0.5
    assert limiter.acquire("k") == 0 and limiter.acquire("k") > 0
    clock.now += 3600
    assert [limiter.acquire("k") for _ in range(4)][:3] == [0, 0, 0]  # refilled up to the burst, no more
    assert limiter.acquire("k") > 0


def test_a_bucket_of_rate_zero_is_off_and_buckets_are_bounded() -> None:
    assert RateLimiter(rate=0, burst=1).acquire("k") == 0
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock, max_keys=2)
    limiter.acquire("a")
    limiter.acquire("b")
    limiter.acquire("c")  # evicts "a", the least recently used: it starts again with a full bucket
    assert limiter.acquire("a") == 0 and limiter.acquire("c") > 0
    assert RateLimiter.retry_after(0.01) == "1" and RateLimiter.retry_after(2.2) == "3"


@pytest.mark.parametrize(("text", "shown"), [
    ("803", "803"),
    ("80\u200b3", "80\\u200b3"),
    ("\u202e308", "\\u202e308"),
    ("a\u0000b", "a\\u0000b"),
    ("\ud800", "\\ud800"),
    ("Huyện Bến Lức", "Huyện Bến Lức"),
    ("x" * 200, "x" * 119 + "…"),
])
def test_an_echo_is_visible_and_encodable(text: str, shown: str) -> None:
    assert safe_echo(text) == shown
    orjson.dumps(safe_echo(text))


def test_a_problem_with_a_lone_surrogate_still_encodes() -> None:
    body = problem_bytes(422, "validation-error", "t", "d", instance="/v1/\ud800", request_id="r",
                         errors=[{"loc": "events[0].x", "message": "bad '\udc80'"}])
    decoded = json.loads(body)
    assert decoded["errors"][0]["message"] == "bad '\\udc80'" and decoded["instance"] == "/v1/\\ud800"
    assert location(("body", "events", 0, "x\ud800")) == "events[0].x\\ud800"


@pytest.mark.parametrize(("text", "bad"), [
    ("báo cáo tháng 7\nđợt 2\tđủ", None),
    ("số\u00a0liệu", None),  # a no-break space from a word processor is fine
    ("a\u0000", (1, "\u0000")),
    ("\u202eabc", (0, "\u202e")),
    ("ab\u200b", (2, "\u200b")),
    ("x\ue000", (1, "\ue000")),
    ("\udc80", (0, "\udc80")),
    ("\x1b[31mred", (0, "\x1b")),
])
def test_free_text_hygiene(text: str, bad: tuple[int, str] | None) -> None:
    assert unsafe_character(text) == bad


def test_a_repeated_field_is_refused_and_huge_integers_are_figures() -> None:
    with pytest.raises(ValidationFailed) as raised:
        parse_body(b'{"events": [{"unit": "803", "unit": "936"}]}')
    assert "unit" in raised.value.detail
    events = parse_body(b'{"events": [{"value": ' + b"9" * 5000 + b"}]}")
    assert events[0]["value"] == Decimal("9" * 5000)


def test_keys_are_random_and_their_id_is_public() -> None:
    keys = {new_key()[1] for _ in range(1000)}
    assert len(keys) == 1000
    key_id, key = new_key()
    assert key_id_of(key) == key_id and key_id_of("d06_short_x") is None and key_id_of("bearer") is None


def _tree() -> Hierarchy:
    def unit(edition: str, code: str, parent: Unit | None, level: str) -> Unit:
        ancestors = (*parent.ancestors, parent.code) if parent else ()
        return Unit(edition, code, parent.code if parent else None, level, "", code, None, ancestors)

    nation = unit("legacy", "VN", None, "nation")
    long_an = unit("legacy", "80", nation, "province")
    hau_giang = unit("legacy", "93", nation, "province")
    ben_luc = unit("legacy", "803", long_an, "district")
    nation25 = unit("2025", "VN", None, "nation")
    tay_ninh = unit("2025", "80", nation25, "province")
    return Hierarchy([nation, long_an, hau_giang, ben_luc, nation25, tay_ninh])


@pytest.mark.parametrize(("admin", "edition", "code", "covered"), [
    (("VN", None), None, "VN", True),
    (("VN", None), "2025", "80", True),
    (("VN", "legacy"), None, "VN", False),  # every edition is wider than one
    (("VN", "legacy"), "legacy", "VN", True),
    (("VN", "legacy"), "legacy", "803", True),
    (("VN", "legacy"), "2025", "80", False),
    (("80", "legacy"), "legacy", "80", True),  # the border: its own unit
    (("80", "legacy"), "legacy", "803", True),
    (("80", "legacy"), "legacy", "93", False),
    (("80", "legacy"), "legacy", "VN", False),
    (("80", "legacy"), "2025", "80", False),  # the same code, another unit
    (("80", "legacy"), "legacy", "99999", False),  # no such unit
    (("803", "legacy"), "legacy", "80", False),  # a parent is wider
])
def test_scope_containment_for_delegation(
    admin: tuple[str, str | None], edition: str | None, code: str, covered: bool
) -> None:
    principal = Principal("k", frozenset({"admin"}), admin[1], admin[0])
    assert principal.covers(_tree(), edition, code) is covered
