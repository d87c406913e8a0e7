"""A token bucket per channel: protects the SMTP relay, SMS gateway and webhook receivers
from a burst of hundreds of notices at once. Waiting is in-process and async."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``acquire`` waits for one."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, 2 * rate)
        self._tokens = self.burst
        self._clock = clock
        self._last = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_acquire(self) -> float:
        """Take a token if one is there (returns 0), else the seconds until one will be."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def acquire(self) -> None:
        async with self._lock:  # first come, first served
            # Waiting for time to pass, not for an event: a sleep is the right tool.
            while (wait := self.try_acquire()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(wait)


def buckets(rates: Mapping[str, float]) -> dict[str, TokenBucket]:
    return {channel: TokenBucket(rate) for channel, rate in rates.items() if rate > 0}
