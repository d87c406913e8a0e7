"""When to poll a feed next: freshness hints, bounds, error backoff, auto-disable.

Pure functions over numbers (no clock, no I/O), so every rule is a one-line test.
Miniflux's policy: the next check is the longest of what we configured and what the
publisher asked for (RSS ``ttl`` / ``sy:updatePeriod``, ``Cache-Control: max-age``,
``Retry-After``), clamped to bounds the operator set; errors back off exponentially;
a feed that keeps failing stops being polled until someone looks at it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

__all__ = ["Bounds", "backoff_seconds", "jittered", "max_age_seconds", "next_interval",
           "should_disable"]

_MAX_AGE = re.compile(r"(?:^|[,\s])(s-maxage|max-age)\s*=\s*\"?(\d+)\"?", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|[,\s])(no-store|no-cache)(?:$|[,\s=])", re.IGNORECASE)


@dataclass(frozen=True)
class Bounds:
    """The operator's limits, in seconds (from Settings.feed_*)."""

    min_seconds: float = 60
    max_seconds: float = 6 * 3600
    backoff_max_seconds: float = 6 * 3600
    max_consecutive_errors: int = 12

    @classmethod
    def from_settings(cls, settings: object) -> Bounds:
        return cls(
            min_seconds=settings.feed_min_interval_seconds,  # type: ignore[attr-defined]
            max_seconds=settings.feed_max_interval_seconds,  # type: ignore[attr-defined]
            backoff_max_seconds=settings.feed_backoff_max_seconds,  # type: ignore[attr-defined]
            max_consecutive_errors=settings.feed_max_consecutive_errors,  # type: ignore[attr-defined]
        )


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def next_interval(interval: float, bounds: Bounds, *, ttl_minutes: int | None = None,
                  max_age: float | None = None, retry_after: float | None = None) -> float:
    """Seconds until the next poll after a success: clamp(max(interval, hints), min, max)."""
    hints = [interval]
    if ttl_minutes:
        hints.append(ttl_minutes * 60.0)
    if max_age:
        hints.append(max_age)
    if retry_after:
        hints.append(retry_after)
    return _clamp(max(hints), bounds.min_seconds, bounds.max_seconds)


def backoff_seconds(interval: float, consecutive_errors: int, bounds: Bounds, *,
                    retry_after: float | None = None) -> float:
    """Seconds until the next poll after the ``consecutive_errors``-th failure in a row.

    interval x 2^(n-1), capped at ``backoff_max_seconds``; a server's Retry-After is
    honoured when it asks for longer (up to the same cap: a hostile or broken header must
    not silence a feed for a year).
    """
    n = max(1, consecutive_errors)
    base = max(interval, bounds.min_seconds)
    wait = base * 2.0 ** min(n - 1, 30)
    if retry_after:
        wait = max(wait, retry_after)
    return _clamp(wait, bounds.min_seconds, max(bounds.backoff_max_seconds, bounds.min_seconds))


def should_disable(consecutive_errors: int, bounds: Bounds) -> bool:
    return consecutive_errors >= bounds.max_consecutive_errors


def max_age_seconds(cache_control: str | None) -> float | None:
    """``max-age`` (or ``s-maxage``) from a Cache-Control header; None when absent or no-cache."""
    if not cache_control or _NO_CACHE.search(cache_control):
        return None
    ages = [int(m.group(2)) for m in _MAX_AGE.finditer(cache_control)]
    return float(max(ages)) if ages else None


def jittered(seconds: float, *, fraction: float = 0.1, cap: float = 30.0,
             rng: random.Random | None = None) -> float:
    """Spread polls of feeds with the same interval so 2,000 feeds don't fire in one instant."""
    spread = min(cap, seconds * fraction)
    return seconds + (rng or random).uniform(0, spread)
