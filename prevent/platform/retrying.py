"""The project's one retry policy: capped exponential backoff with full jitter, run by tenacity.

This module decides only *how long* to wait and *how many times*; whether a failure is worth
retrying stays with the caller, who knows what it means (``messaging.classify_error``, a
channel's ``SendResult``, a lost race for the database's write lock): it is passed as
``retry_on``.

* :func:`backoff` is the one formula: before retry ``n`` (0 first) wait a time drawn
  uniformly from ``[0, min(cap, base × 2ⁿ)]`` ("full jitter", the AWS architecture blog's
  recommendation, so that many waiters do not retry in step). A persisted schedule that must
  never be due at once (a notice's next attempt) keeps part of the wait fixed with ``floor``
  (``floor=0.5`` is "equal jitter").
* :func:`retrying` is a ``tenacity.AsyncRetrying`` using it: ``async for attempt in
  retrying(...): with attempt: ...``. It re-raises the last error when it stops (never
  ``tenacity.RetryError``), and never retries a ``CancelledError`` or other
  ``BaseException``: a shutdown is not a failure.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import tenacity
from tenacity import RetryCallState

__all__ = ["RetryCallState", "backoff", "retrying"]


def backoff(retry: int, *, base: float, cap: float, floor: float = 0.0,
            rng: random.Random | None = None) -> float:
    """Seconds to wait before the retry numbered ``retry`` (0 first): exponential from
    ``base``, capped at ``cap``, with full jitter; ``floor`` is the share of that ceiling
    that is kept fixed (0: full jitter, 0.5: equal jitter)."""
    ceiling: float = min(cap, base * 2 ** min(max(retry, 0), 30))  # int ** int is typed Any
    return ceiling * floor + (rng or random).uniform(0, ceiling * (1 - floor))


class _Wait(tenacity.wait.wait_base):
    def __init__(self, base: float, cap: float, at_once: Callable[[BaseException], bool] | None,
                 rng: random.Random | None) -> None:
        self.base, self.cap, self.at_once, self.rng = base, cap, at_once, rng

    def __call__(self, retry_state: RetryCallState) -> float:
        if self.at_once is not None and retry_state.outcome is not None:
            exc = retry_state.outcome.exception()
            if exc is not None and self.at_once(exc):
                return 0.0
        return backoff(retry_state.attempt_number - 1, base=self.base, cap=self.cap, rng=self.rng)


def retrying(*, retry_on: Callable[[Exception], bool], attempts: int | None = None,
             base: float = 0.2, cap: float = 30.0,
             before_sleep: Callable[[RetryCallState], None] | None = None,
             at_once: Callable[[BaseException], bool] | None = None,
             rng: random.Random | None = None) -> tenacity.AsyncRetrying:
    """Retry what ``retry_on`` accepts, ``attempts`` times in all (None: until it succeeds),
    waiting :func:`backoff` between attempts (``at_once``: failures retried without waiting,
    because the caller changed something first). ``before_sleep`` is told of each retry
    (``retry_state.attempt_number``, ``.outcome.exception()``, ``.upcoming_sleep``): the
    place to log it."""

    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, Exception) and retry_on(exc)

    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(retryable),
        stop=tenacity.stop_after_attempt(attempts) if attempts is not None else tenacity.stop_never,
        wait=_Wait(base, cap, at_once, rng),
        before_sleep=before_sleep,
        reraise=True,
    )
