"""When to poll next: pure functions, so each rule is one assertion."""

from __future__ import annotations

import random

import pytest

from prevent.feeds.schedule import (
    Bounds,
    backoff_seconds,
    jittered,
    max_age_seconds,
    next_interval,
    should_disable,
)

B = Bounds(min_seconds=60, max_seconds=3600, backoff_max_seconds=7200, max_consecutive_errors=5)


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, 300),                                   # the configured interval
    ({"ttl_minutes": 15}, 900),                  # RSS ttl / sy:updatePeriod is longer
    ({"ttl_minutes": 1}, 300),                   # a shorter hint never speeds polling up
    ({"max_age": 1200}, 1200),                   # Cache-Control: max-age
    ({"retry_after": 2000, "max_age": 1200}, 2000),
    ({"ttl_minutes": 24 * 60}, 3600),            # clamped to the maximum
])
def test_next_interval_is_the_longest_hint_within_bounds(kwargs: dict, expected: float) -> None:
    assert next_interval(300, B, **kwargs) == expected


def test_next_interval_respects_the_minimum() -> None:
    assert next_interval(10, B) == 60


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_seconds(300, n, B) for n in (1, 2, 3, 4, 5, 40)] == [300, 600, 1200, 2400, 4800, 7200]


def test_backoff_honours_a_longer_retry_after_up_to_the_cap() -> None:
    assert backoff_seconds(300, 1, B, retry_after=3000) == 3000
    assert backoff_seconds(300, 1, B, retry_after=10 ** 9) == 7200
    assert backoff_seconds(300, 3, B, retry_after=5) == 1200


def test_disable_after_the_configured_number_of_failures() -> None:
    assert not should_disable(4, B)
    assert should_disable(5, B)


@pytest.mark.parametrize(("header", "expected"), [
    ("max-age=600", 600), ("public, max-age=600, s-maxage=900", 900), ('max-age="120"', 120),
    ("no-cache, max-age=600", None), ("no-store", None), ("private", None), (None, None), ("", None),
])
def test_max_age(header: str | None, expected: float | None) -> None:
    assert max_age_seconds(header) == expected


def test_jitter_adds_at_most_ten_percent_and_thirty_seconds() -> None:
    rng = random.Random(7)
    samples = [jittered(100, rng=rng) for _ in range(200)] + [jittered(3600, rng=rng) for _ in range(200)]
    assert all(100 <= s <= 110 for s in samples[:200])
    assert all(3600 <= s <= 3630 for s in samples[200:])
    assert len(set(samples)) > 300  # spread, not constant
