"""Bounds on delivery: a rate per channel and, per channel and per receiving host, a bound on
the sends in flight. They protect the SMTP relay, the SMS gateway and partners' webhook
receivers from a burst of hundreds of notices at once, and keep one slow host from taking
every slot: a partner's webhook that hangs until its timeout holds only that host's slots.

The rate is a leaky bucket (``aiolimiter.AsyncLimiter``). A rate says nothing about how many
sends are open at once (a host answering in 10 s at 10 sends a second has 100 open), so the
in-flight bounds are ``asyncio.Semaphore``s, per channel and per (channel, host).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TypeVar

from aiolimiter import AsyncLimiter

# Sends in flight at once. Email goes to our one relay, one message at a time (a connection
# per message): a crash mid fan-out then leaves at most one message whose delivery is unknown,
# resent with its Message-ID (tests/e2e/test_notifier_crash.py), and the relay still takes
# the default 20 a second. Webhooks go to as many hosts as there are partners, each bounded
# on its own (a host is its name and port).
CHANNEL_IN_FLIGHT = {"email": 1, "sms": 8, "webhook": 32}
HOST_IN_FLIGHT = {"email": 1, "sms": 8, "webhook": 2}
DEFAULT_IN_FLIGHT = 4

K = TypeVar("K")  # a semaphore table's key: a channel, or (channel, host)


def limiter(rate: float) -> AsyncLimiter:
    """``rate`` sends per second; a burst of up to one second's worth (at least one)."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    return AsyncLimiter(rate, 1.0) if rate >= 1 else AsyncLimiter(1, 1 / rate)


class DeliveryLimits:
    def __init__(self, rates: Mapping[str, float] | None = None, *,
                 channel_in_flight: Mapping[str, int] | None = None,
                 host_in_flight: Mapping[str, int] | None = None) -> None:
        self._rates = {c: limiter(r) for c, r in (rates or {}).items() if r > 0}
        self._channel_bound = dict(CHANNEL_IN_FLIGHT if channel_in_flight is None else channel_in_flight)
        self._host_bound = dict(HOST_IN_FLIGHT if host_in_flight is None else host_in_flight)
        self._channels: dict[str, asyncio.Semaphore] = {}
        self._hosts: dict[tuple[str, str], asyncio.Semaphore] = {}

    def _semaphore(self, table: dict[K, asyncio.Semaphore], key: K, bound: int) -> asyncio.Semaphore:
        semaphore = table.get(key)
        if semaphore is None:
            semaphore = table[key] = asyncio.Semaphore(max(1, bound))
        return semaphore

    @asynccontextmanager
    async def slot(self, channel: str, host: str) -> AsyncIterator[None]:
        """Wait for a free slot of the host, then of the channel, then for the rate."""
        host_sem = self._semaphore(self._hosts, (channel, host),
                                   self._host_bound.get(channel, DEFAULT_IN_FLIGHT))
        channel_sem = self._semaphore(self._channels, channel,
                                      self._channel_bound.get(channel, DEFAULT_IN_FLIGHT))
        # The host's slot first: sends queued behind a slow host wait there, not in the
        # channel's slots, which the other hosts' sends need.
        async with host_sem, channel_sem:
            rate = self._rates.get(channel)
            if rate is not None:
                await rate.acquire()
            yield


def buckets(rates: Mapping[str, float]) -> DeliveryLimits:
    """The limits from settings (``PREVENT_CHANNEL_RATE_PER_SECOND``)."""
    return DeliveryLimits(rates)
