"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org): a feed's ``items`` as entries.

feedparser 6.0 reads no JSON, and a JSON body first goes to ``geojson``, which hands a
document whose ``version`` is a jsonfeed.org URL over to here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prevent.feeds.parse import FeedEntry, FeedParseError, ParsedFeed, language_tag, parse_datetime

VERSION_PREFIX = "https://jsonfeed.org/version/"


def is_json_feed(data: Any) -> bool:
    return isinstance(data, dict) and str(data.get("version", "")).startswith(VERSION_PREFIX)


def _str(value: Any) -> str | None:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def parse_json_feed(data: Mapping[str, Any], *, url: str) -> ParsedFeed:
    items = data.get("items")
    if not isinstance(items, list):
        raise FeedParseError(url, "JSON Feed without an items list")
    feed_lang = language_tag(data.get("language"))
    entries = [_entry(item, feed_lang) for item in items if isinstance(item, dict)]
    skipped = len(items) - len(entries)
    hubs = data.get("hubs")
    hub = next((_str(h.get("url")) for h in hubs if isinstance(h, dict)), None) \
        if isinstance(hubs, list) else None
    return ParsedFeed(
        entries=entries,
        bozo=bool(skipped),
        bozo_reason=f"{skipped} item(s) skipped (not objects)" if skipped else None,
        title=_str(data.get("title")),
        link=_str(data.get("home_page_url")),
        language=feed_lang,
        hub_url=hub,
        self_url=_str(data.get("feed_url")),
        format="json" + str(data["version"]).removeprefix(VERSION_PREFIX).replace(".", ""),
    )


def _entry(item: Mapping[str, Any], feed_lang: str | None) -> FeedEntry:
    tags = item.get("tags")
    categories = [t for t in (_str(x) for x in tags) if t] if isinstance(tags, list) else []
    return FeedEntry(
        guid=_str(item.get("id")),
        link=_str(item.get("url")) or _str(item.get("external_url")),
        title=_str(item.get("title")),
        # content_text is plain; summary is the item's own short text; content_html is reduced
        # to text by normalize like any HTML summary.
        summary=_str(item.get("content_text")) or _str(item.get("summary"))
        or _str(item.get("content_html")),
        published=parse_datetime(item.get("date_published")),
        updated=parse_datetime(item.get("date_modified")),
        language=language_tag(item.get("language")) or feed_lang,
        categories=list(dict.fromkeys(categories)),
    )
