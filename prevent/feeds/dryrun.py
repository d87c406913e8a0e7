"""`prevent feeds check`: what one feed would emit, without publishing or remembering.

The same fetch (SSRF guard, limits) and the same parse and normalize as the watcher;
what the watcher adds is only the memory of what was already published, so on a first
poll it emits exactly these incidents.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from prevent.contracts import FeedKind, GlobalIncident
from prevent.feeds.catalog import FeedConfig
from prevent.feeds.fetch import Fetcher, new_client
from prevent.feeds.normalize import incidents_from_bytes
from prevent.feeds.threat import extract_level
from prevent.platform.config import Settings


def _feed_for(target: str, kind: str | None, level_pattern: str | None = None) -> FeedConfig:
    url = target if re.match(r"^(https?|file):", target) else Path(target).resolve().as_uri()
    slug = re.sub(r"[^a-z0-9]+", "-", Path(url).stem.lower()).strip("-")[:60] or "check"
    guessed = kind or ("geojson" if url.endswith((".json", ".geojson")) else "rss")
    return FeedConfig(id=slug, url=url, kind=FeedKind(guessed), level_pattern=level_pattern)


async def check_feed(target: str, kind: str | None = None, *, settings: Settings | None = None,
                     level_pattern: str | None = None) -> tuple[list[GlobalIncident], list[str]]:
    """The incidents and the per-entry problems; raises FetchError/FeedParseError/ValueError."""
    settings = settings or Settings()
    feed = _feed_for(target, kind, level_pattern)
    async with new_client(settings) as client:
        result = await Fetcher.from_settings(client, settings).fetch(feed.url)
    if feed.kind is FeedKind.THREAT_LEVEL:
        level = await asyncio.to_thread(extract_level, result.body, feed, result.headers)
        return [], [f"current threat level: {level} (an incident is emitted only when it changes)"]
    incidents, parsed, problems = await asyncio.to_thread(
        incidents_from_bytes, result.body, feed, headers=result.headers)
    if parsed.bozo and parsed.bozo_reason:
        problems.insert(0, f"feed is not well-formed ({parsed.bozo_reason}); entries recovered")
    return incidents, problems
