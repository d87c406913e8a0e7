"""Times for people, in the unit's time zone (``PREVENT_TIME_ZONE``, default
America/Toronto) and one format: the console's pages, the acknowledgement pages partner
contacts see, and the text of every notice and message the system sends (partner notices,
the engagement officer's follow-ups and reviews, escalations to the duty roster). Stored
and exchanged times stay UTC; only what a person reads is converted.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger("prevent.platform.unittime")

TIME_FORMAT = "%Y-%m-%d %H:%M %Z"  # one format everywhere: 24-hour clock, the zone's abbreviation


@lru_cache(maxsize=16)
def zone(name: str) -> tzinfo:
    """The unit's time zone (PREVENT_TIME_ZONE); an unknown name falls back to UTC, logged."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r (PREVENT_TIME_ZONE): showing UTC", name)
        return UTC


def as_datetime(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # stored times are UTC


def local_text(value: datetime | str | None, tz: str, fmt: str = TIME_FORMAT) -> str:
    """``value`` as people in the unit read it ("2026-07-01 12:30 EDT"); "" for none."""
    moment = as_datetime(value)
    return moment.astimezone(zone(tz)).strftime(fmt) if moment else ""
