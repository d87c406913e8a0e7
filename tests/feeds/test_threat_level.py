"""Threat-level feeds: an HTML advisory page, a regex, and an incident only on change."""

from __future__ import annotations

import pytest

from prevent.feeds.catalog import FeedConfig
from prevent.feeds.threat import ThreatLevelError, extract_level

from .conftest import Collector, Rig
from .server import FeedServer

PATTERN = r"current national threat level is\s*(?:<[^>]+>\s*)*([A-Za-z ]+?)\s*<"


def page(level: str) -> bytes:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Threat levels</title></head>"
            f"<body><script>var level='LOW';</script><p>The current national threat level is "
            f"<strong>{level}</strong>.</p></body></html>").encode()


def threat_feed(url: str) -> FeedConfig:
    return FeedConfig(id="uk-threat", url=url, kind="threat_level", interval_seconds=600,
                      level_pattern=PATTERN, country="GB")


def test_extract_level_normalises_case_and_space() -> None:
    feed = threat_feed("https://example.org/threat")
    assert extract_level(page("Substantial"), feed) == "SUBSTANTIAL"
    assert extract_level(page("  severe\n"), feed) == "SEVERE"
    with pytest.raises(ThreatLevelError, match="uk-threat"):
        extract_level(b"<html>maintenance</html>", feed)


async def test_change_is_emitted_once_and_first_observation_is_not(rig: Rig, feed_server: FeedServer) -> None:
    levels = ["SUBSTANTIAL", "SUBSTANTIAL", "SEVERE", "SEVERE", "SUBSTANTIAL"]
    feed_server.routes["/threat"] = lambda req: (
        200, {"Content-Type": "text/html; charset=utf-8"}, page(levels[len(feed_server.hits("/threat")) - 1]))
    out = Collector()
    watcher = rig.watcher([threat_feed(feed_server.url("/threat"))], out)
    counts = [(await watcher.poll("uk-threat")).published for _ in levels]
    assert counts == [0, 0, 1, 0, 1]
    first, second = out.published
    assert first.title == "National terrorism threat level changed from SUBSTANTIAL to SEVERE"
    assert (first.threat_level.previous, first.threat_level.current) == ("SUBSTANTIAL", "SEVERE")
    assert first.kind == "threat_level" and first.location.country == "GB"
    assert second.threat_level.current == "SUBSTANTIAL"
    assert first.incident_id != second.incident_id


async def test_a_restart_keeps_the_level(rig: Rig, feed_server: FeedServer) -> None:
    level = {"now": "SEVERE"}
    feed_server.routes["/threat"] = lambda req: (200, {}, page(level["now"]))
    feed = threat_feed(feed_server.url("/threat"))
    await rig.watcher([feed]).poll("uk-threat")
    level["now"] = "CRITICAL"
    out = Collector()
    assert (await rig.watcher([feed], out).poll("uk-threat")).published == 1
    assert out.published[0].threat_level.previous == "SEVERE"


async def test_a_page_without_the_level_is_a_parse_error(rig: Rig, feed_server: FeedServer) -> None:
    feed_server.routes["/threat"] = lambda req: (200, {}, b"<html>Service unavailable</html>")
    outcome = await rig.watcher([threat_feed(feed_server.url("/threat"))]).poll("uk-threat")
    assert outcome.error and outcome.error.startswith("parse:")
