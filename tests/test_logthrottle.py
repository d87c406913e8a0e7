"""A dependency outage must not flood the log: repeats are held back and counted."""

from __future__ import annotations

import logging

from prevent.platform.logthrottle import RepeatThrottle


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_repeats_within_the_interval_are_held_back_then_counted() -> None:
    now = [0.0]
    throttle = RepeatThrottle(interval=30, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    assert throttle.filter(record("aiokafka.conn", template, 1, "refused"))
    held = [throttle.filter(record("aiokafka.conn", template, n, "refused")) for n in range(5)]
    assert held == [False] * 5
    now[0] = 31.0
    summary = record("aiokafka.conn", template, 2, "refused")
    assert throttle.filter(summary)
    assert summary.getMessage() == ("Unable connect to node with id 2: refused "
                                    "(5 more like this in the last 31 s)")
    assert not throttle.filter(record("aiokafka.conn", template, 3, "refused"))


def test_other_loggers_templates_and_info_records_pass() -> None:
    throttle = RepeatThrottle(interval=30, clock=lambda: 0.0)
    assert throttle.filter(record("aiokafka.conn", "first %s", 1))
    assert throttle.filter(record("aiokafka.conn", "second %s", 1))  # another template
    assert throttle.filter(record("prevent.rules.stage", "first %s", 1))
    assert throttle.filter(record("prevent.rules.stage", "first %s", 1))  # not a throttled logger
    assert throttle.filter(record("aiokafka.conn", "first %s", 1, level=logging.INFO))
