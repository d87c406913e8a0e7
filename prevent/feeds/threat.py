"""Threat-level feeds: the national terrorism threat level from an advisory page.

The page is usually HTML, not a feed, so feedparser never sees it: the feed's
``level_pattern`` (a regex with one group) is searched in the decoded text, first raw
(patterns may anchor on markup) and then as plain text. The level is normalised to
upper case with single spaces, so "Substantial" and "SUBSTANTIAL " are one level.

An incident is emitted only when the level *changes*. The first observation of a feed
only records the level: the watcher cannot know whether it just changed, and alerting
every partner on the first start of a watcher (or after adding the feed) would be a false
alarm.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from prevent.contracts import FeedKind, GlobalIncident, Location, ThreatLevelChange, stable_id
from prevent.feeds.catalog import FeedConfig
from prevent.feeds.text import html_to_text

__all__ = ["ThreatLevelError", "change_incident", "extract_level"]

_CHARSET = re.compile(r"charset=[\"']?([A-Za-z0-9._-]+)", re.IGNORECASE)
_META_CHARSET = re.compile(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9._-]+)", re.IGNORECASE)
MAX_LEVEL_CHARS = 60


class ThreatLevelError(ValueError):
    """The page did not show a level where the pattern looks; names the feed."""


def _decode(body: bytes, headers: Mapping[str, str] | None) -> str:
    declared = _CHARSET.search((headers or {}).get("content-type", ""))
    meta = _META_CHARSET.search(body[:4096])
    for candidate in (declared.group(1) if declared else None,
                      meta.group(1).decode("ascii", "ignore") if meta else None, "utf-8"):
        if not candidate:
            continue
        try:
            return body.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("utf-8", errors="replace")


def _clean(level: str) -> str:
    text = html_to_text(level) if "<" in level or "&" in level else level
    return " ".join(text.split()).upper()


def extract_level(body: bytes, feed: FeedConfig, headers: Mapping[str, str] | None = None) -> str:
    """The current level on the page; raises ThreatLevelError when the pattern finds none."""
    assert feed.level_pattern is not None  # noqa: S101 - FeedConfig guarantees it for this kind
    pattern = re.compile(feed.level_pattern, re.IGNORECASE | re.DOTALL)
    raw = _decode(body, headers)
    for text in (raw, html_to_text(raw)):
        match = pattern.search(text)
        if match and match.group(1) and _clean(match.group(1)):
            level = _clean(match.group(1))
            if len(level) > MAX_LEVEL_CHARS:
                raise ThreatLevelError(f"feed {feed.id}: level_pattern matched {len(level)} characters "
                                       f"(more than {MAX_LEVEL_CHARS}): the group is too broad")
            return level
    raise ThreatLevelError(f"feed {feed.id}: level_pattern {feed.level_pattern!r} found no level "
                           f"in the page at {feed.url}")


def change_incident(feed: FeedConfig, previous: str, current: str, *, previous_since: datetime,
                    now: datetime) -> GlobalIncident:
    """The incident for a change from ``previous`` to ``current``.

    The id depends on the stored state (previous level and since when), not on the
    clock, so a publish retried after a failure republishes the same incident.
    """
    title = f"National terrorism threat level changed from {previous} to {current}"
    incident_id = stable_id("inc", feed.id, "threat_level", previous, current, previous_since.isoformat())
    location = Location(country=feed.country, place=feed.region) if feed.country or feed.region else None
    return GlobalIncident(
        incident_id=incident_id, feed_id=feed.id, kind=FeedKind.THREAT_LEVEL, title=title,
        summary=f"The threat level published at {feed.url} is now {current} (was {previous}).",
        url=feed.url if feed.url.startswith(("http://", "https://")) else None,
        published=now, first_seen=now, language=feed.language or "en",
        trust_weight=feed.trust_weight, location=location,
        threat_level=ThreatLevelChange(previous=previous, current=current),
        content_hash=f"sha256:{stable_id('h', previous, current)[2:]}",
    )
