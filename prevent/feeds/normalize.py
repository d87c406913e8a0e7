"""Entries in, ``GlobalIncident`` events out: the normalize stage of a feed watcher.

Everything downstream (dedup, clustering, classification, notices) relies on what this
guarantees: a stable id per story, a canonical link, bounded plain text, a UTC time
that is never in the future, and a content hash that changes when the story does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from prevent.classification.language import MAX_CHARS, detect_language
from prevent.classification.places import country_at
from prevent.contracts import GlobalIncident, Location, stable_id, utcnow
from prevent.feeds.catalog import FeedConfig
from prevent.feeds.parse import FeedEntry, ParsedFeed, parse_feed
from prevent.feeds.text import canonical_url, first_words, html_to_text, truncate

TITLE_MAX = 300
SUMMARY_MAX = 2000
MAX_CATEGORIES = 20
# Clocks and time zones are wrong often enough that a little future is tolerated.
FUTURE_TOLERANCE = timedelta(days=1)


class NormalizeError(ValueError):
    """The entry cannot become an incident (no usable title, invalid values)."""


def _aware_utc(dt: datetime) -> datetime:
    return (dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt).astimezone(UTC)


def _published(entry: FeedEntry, first_seen: datetime) -> datetime:
    when = entry.published or entry.updated
    if when is None:
        return first_seen
    when = _aware_utc(when)
    return first_seen if when > first_seen + FUTURE_TOLERANCE else when


def _location(entry: FeedEntry, feed: FeedConfig) -> Location | None:
    loc = entry.location
    if loc is None:
        if feed.country is None and feed.region is None:
            return None
        return Location(country=feed.country, place=feed.region)
    if loc.country is None and feed.country is not None:
        # The registry says where this feed's events happen (a national alert feed).
        return loc.model_copy(update={"country": feed.country})
    if loc.country is None and loc.lat is not None and loc.lon is not None:
        # The entry's own coordinates (GeoRSS, GeoJSON, CAP): the country of the nearest city.
        return loc.model_copy(update={"country": country_at(loc.lat, loc.lon)})
    return loc


_EPISODE_FIELDS = ("gdacs:episodealertlevel:", "gdacs:iscurrent:")


def content_hash(title: str, summary: str, url: str | None, entry: FeedEntry) -> str:
    parts = [title, summary, url or ""]
    if entry.cap is not None:
        # A CAP update may change only severity or urgency; that is new content too.
        cap = entry.cap
        parts += [cap.msg_type or "", cap.severity or "", cap.urgency or "", cap.certainty or ""]
    # A GDACS episode that escalates (a drought's episode Green -> Orange under an event
    # already Orange) or ends changes nothing else the hash reads, and must be seen again.
    parts += [c for c in entry.categories if c.startswith(_EPISODE_FIELDS)]
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return f"sha256:{digest[:32]}"


def _categories(entry: FeedEntry) -> tuple[str, ...]:
    cleaned = (truncate(html_to_text(c), 100) for c in entry.categories)
    return tuple(dict.fromkeys(c for c in cleaned if c))[:MAX_CATEGORIES]


def normalize(entry: FeedEntry, feed: FeedConfig, *, base_url: str,
              first_seen: datetime) -> GlobalIncident:
    """One entry as a GlobalIncident; raises NormalizeError when it cannot be one."""
    first_seen = _aware_utc(first_seen)
    summary = truncate(html_to_text(entry.summary), SUMMARY_MAX)
    title = truncate(html_to_text(entry.title), TITLE_MAX)
    if not title:
        title = first_words(summary)
    if not title:
        raise NormalizeError("no title and no summary text")
    url = canonical_url(entry.link, base_url)
    guid = (entry.guid or "").strip()
    if guid:
        incident_id = stable_id("inc", feed.id, guid)
    elif url:
        incident_id = stable_id("inc", feed.id, url)
    else:
        incident_id = stable_id("inc", feed.id, title)
    try:
        incident = GlobalIncident(
            incident_id=incident_id,
            feed_id=feed.id,
            kind=feed.kind,
            title=title,
            summary=summary,
            url=url,
            published=_published(entry, first_seen),
            first_seen=first_seen,
            # The item's own language: the feed's declared one is the identifier's prior.
            language=detect_language(title, summary[:MAX_CHARS], entry.language or feed.language,
                                     default=None),
            trust_weight=feed.trust_weight,
            location=_location(entry, feed),
            cap=entry.cap,
            categories=_categories(entry),
            content_hash=content_hash(title, summary, url, entry),
            exercise=entry.exercise,
        )
        if "\\u0000" in incident.model_dump_json():  # cheap: a NUL anywhere shows as \u0000
            # PostgreSQL cannot store a NUL character (U+0000) in text: a GeoJSON "\u0000"
            # would make the incident fail to store downstream.
            incident = GlobalIncident.model_validate(_without_nul(incident.model_dump()))
        return incident
    except ValidationError as exc:
        raise NormalizeError(str(exc.errors()[0].get("msg", exc))) from None


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_without_nul(v) for v in value)
    return value


def _base_url(feed: FeedConfig, parsed: ParsedFeed, headers: Mapping[str, str] | None) -> str:
    """Where relative links are resolved: the document's own http(s) address."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    # The configured URL first: ids of guid-less entries depend on the resolved link,
    # and the configuration is steadier than a response header.
    for candidate in (feed.url, lowered.get("content-location"), parsed.self_url, parsed.link):
        if candidate and candidate.lower().startswith(("http://", "https://")):
            return candidate
    return ""


def _describe(index: int, entry: FeedEntry) -> str:
    label = entry.guid or entry.link or (entry.title or "")[:60]
    return f"entry {index}" + (f" ({label!r})" if label else "")


def incidents_from_bytes(
    body: bytes, feed: FeedConfig, *, headers: Mapping[str, str] | None = None,
    first_seen: datetime | None = None,
) -> tuple[list[GlobalIncident], ParsedFeed, list[str]]:
    """Parse and normalize one fetched body.

    Returns the incidents (first occurrence wins when a feed repeats an id), the parsed
    feed (for ttl, hub, bozo) and one problem string per entry that was skipped.
    Raises FeedParseError when the body holds no feed at all.
    """
    first_seen = _aware_utc(first_seen or utcnow())
    parsed = parse_feed(body, url=feed.url, headers=headers, kind=feed.kind)
    base_url = _base_url(feed, parsed, headers)
    incidents: list[GlobalIncident] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(parsed.entries):
        try:
            incident = normalize(entry, feed, base_url=base_url, first_seen=first_seen)
        except NormalizeError as exc:
            problems.append(f"{_describe(index, entry)}: skipped: {exc}")
            continue
        if incident.incident_id in seen:
            problems.append(f"{_describe(index, entry)}: skipped: duplicate of entry "
                            f"{seen[incident.incident_id]} (same id)")
            continue
        seen[incident.incident_id] = index
        incidents.append(incident)
    return incidents, parsed, problems
