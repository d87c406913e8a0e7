"""`prevent feeds check`: what one feed would emit, without publishing or remembering."""

from __future__ import annotations

import re
from pathlib import Path

from prevent.contracts import FeedKind, GlobalIncident
from prevent.feeds.fetch import fetch, new_client
from prevent.feeds.normalize import incidents_from_bytes
from prevent.feeds.registry import FeedConfig


def _feed_for(target: str, kind: str | None) -> FeedConfig:
    url = target if re.match(r"^(https?|file):", target) else Path(target).resolve().as_uri()
    slug = re.sub(r"[^a-z0-9]+", "-", Path(url).stem.lower()).strip("-")[:60] or "check"
    guessed = kind or ("geojson" if url.endswith((".json", ".geojson")) else "rss")
    return FeedConfig(id=slug, url=url, kind=FeedKind(guessed))


async def check_feed(target: str, kind: str | None = None
                     ) -> tuple[list[GlobalIncident], list[str]]:
    feed = _feed_for(target, kind)
    async with new_client() as client:
        result = await fetch(client, feed.url)
    incidents, parsed, problems = incidents_from_bytes(result.body, feed, headers=result.headers)
    if parsed.bozo and parsed.bozo_reason:
        problems.insert(0, f"feed is not well-formed ({parsed.bozo_reason}); entries recovered")
    return incidents, problems
