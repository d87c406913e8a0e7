"""Keeps a dependency outage from flooding the log.

While Kafka is unreachable, aiokafka logs "Unable connect to node ..." on every reconnect
attempt, many times a second. :class:`RepeatThrottle` lets one record per logger and
message template through every ``interval`` seconds and says how many it held back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

THROTTLED_LOGGERS = ("aiokafka",)


class RepeatThrottle(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...] = THROTTLED_LOGGERS, interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.interval = interval
        self.clock = clock
        self._last: dict[tuple[str, object], tuple[float, int]] = {}  # -> (last let through, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.msg)  # the template: the same failure with other arguments
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval:
            self._last[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.getMessage()} ({last[1]} more like this in the last {now - last[0]:.0f} s)"
            record.args = None
        self._last[key] = (now, 0)
        return True


def install(interval: float = 30.0) -> None:
    """Throttle on every root handler (a filter on a logger would miss its children)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatThrottle) for f in handler.filters):
            handler.addFilter(RepeatThrottle(interval=interval))
