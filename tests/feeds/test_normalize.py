"""normalize(): ids, canonical links, plain bounded text, UTC times, content hashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from prevent.contracts import CapInfo, FeedKind, Location, stable_id
from prevent.feeds.catalog import FeedConfig
from prevent.feeds.normalize import NormalizeError, incidents_from_bytes, normalize
from prevent.feeds.parse import FeedEntry
from prevent.feeds.text import canonical_url, html_to_text, truncate

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
FEED = FeedConfig(id="world-news", url="https://news.example.org/world/feed.xml", kind="rss",
                  language="en", trust_weight=0.8, country="GB", region="London")
BASE = "https://news.example.org/world/feed.xml"


def norm(entry: FeedEntry, feed: FeedConfig = FEED):
    return normalize(entry, feed, base_url=BASE, first_seen=NOW)


def test_id_from_guid_then_link_then_title() -> None:
    a = norm(FeedEntry(guid=" g-1 ", title="x", link="https://a.example/1"))
    assert a.incident_id == stable_id("inc", "world-news", "g-1")
    b = norm(FeedEntry(title="x", link="https://A.example/1?utm_source=t#top"))
    assert b.incident_id == stable_id("inc", "world-news", "https://a.example/1")
    c = norm(FeedEntry(title="<b>Only</b> a title"))
    assert c.incident_id == stable_id("inc", "world-news", "Only a title")
    other_feed = FEED.model_copy(update={"id": "other"})
    assert norm(FeedEntry(guid="g-1", title="x"), other_feed).incident_id != a.incident_id


def test_canonical_url_and_relative_links() -> None:
    inc = norm(FeedEntry(title="t", link="../story/7?id=3&utm_source=rss&fbclid=abc&ref=tw#c"))
    assert inc.url == "https://news.example.org/story/7?id=3"
    assert canonical_url("HTTPS://Example.COM:443/A/b?gclid=1&mc_cid=2&mc_eid=3&igshid=4") == \
        "https://example.com/A/b"
    assert canonical_url("http://user:pw@example.com:8080") == "http://example.com:8080/"
    assert canonical_url("javascript:alert(1)") is None
    assert canonical_url("mailto:x@example.com") is None
    assert canonical_url("/relative/only") is None
    assert canonical_url("http://[::1]:80/x") == "http://[::1]/x"
    assert canonical_url("http://example.com:99999/") is None
    assert canonical_url("https://e.com/p?a=1&&UTM_Medium=x&b=%20") == "https://e.com/p?a=1&b=%20"


def test_html_is_made_plain_text() -> None:
    entry = FeedEntry(
        title="<b>Attack</b> on <script>alert('x')</script>mosque &amp; school&nbsp;&#8212; live",
        summary="<p>Police&nbsp;said</p><style>p{color:red}</style><ul><li>one</li><li>two</li>"
                "</ul><img src=x onerror=alert(1)>&lt;script&gt;bad()&lt;/script&gt;",
    )
    inc = norm(entry)
    assert inc.title == "Attack on mosque & school \u2014 live"
    assert inc.summary == "Police said one two"
    assert "alert" not in inc.title + inc.summary and "color" not in inc.summary


def test_text_is_bounded_at_word_boundaries() -> None:
    words = " ".join(f"word{i}" for i in range(400))
    inc = norm(FeedEntry(title=words, summary=words * 2))
    assert len(inc.title) <= 300 and inc.title.endswith("\u2026")
    assert len(inc.summary) <= 2000 and inc.summary.endswith("\u2026")
    assert inc.title[:-1].split(" ")[-1].startswith("word")
    assert inc.title[:-1] in words  # cut between words, not inside one
    assert truncate("short", 10) == "short"
    assert truncate("a" * 50, 10) == "a" * 9 + "\u2026"


def test_empty_title_falls_back_to_summary_or_fails() -> None:
    inc = norm(FeedEntry(title="<img src=x>", summary="<p>" + "Explosion near embassy. " * 20))
    assert inc.title.startswith("Explosion near embassy.") and len(inc.title) <= 120
    with pytest.raises(NormalizeError):
        norm(FeedEntry(title="  <br/> ", summary="<script>only script</script>"))


def test_dates() -> None:
    assert norm(FeedEntry(title="t")).published == NOW  # missing: first_seen
    tz = timezone(timedelta(hours=-3))
    inc = norm(FeedEntry(title="t", published=datetime(2024, 6, 1, 6, 0, tzinfo=tz)))
    assert inc.published == datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
    assert inc.published.utcoffset() == timedelta(0)
    assert norm(FeedEntry(title="t", updated=NOW - timedelta(hours=2))).published == \
        NOW - timedelta(hours=2)
    soon = NOW + timedelta(hours=20)  # within a day: clocks differ, keep it
    assert norm(FeedEntry(title="t", published=soon)).published == soon
    far = NOW + timedelta(days=3)
    assert norm(FeedEntry(title="t", published=far)).published == NOW
    naive = norm(FeedEntry(title="t", published=datetime(2024, 1, 1)))
    assert naive.published == datetime(2024, 1, 1, tzinfo=UTC)


def test_language_location_trust_kind() -> None:
    inc = norm(FeedEntry(title="t"))
    assert inc.language == "en" and inc.trust_weight == 0.8 and inc.kind is FeedKind.RSS
    assert inc.location == Location(country="GB", place="London")
    inc = norm(FeedEntry(title="t", language="fr",
                         location=Location(country="FR", place="Paris", lat=48.8, lon=2.3)))
    assert inc.language == "fr" and inc.location is not None and inc.location.country == "FR"
    inc = norm(FeedEntry(title="t", location=Location(lat=1.0, lon=2.0)))
    assert inc.location == Location(country="GB", lat=1.0, lon=2.0)
    bare = FEED.model_copy(update={"country": None, "region": None, "language": None})
    inc = norm(FeedEntry(title="t"), bare)
    assert inc.location is None and inc.language is None


def test_content_hash_tracks_content_not_identity() -> None:
    base = FeedEntry(guid="g", title="Fire at temple", summary="Crews attend.",
                     link="https://e.com/a")
    h1 = norm(base).content_hash
    assert norm(FeedEntry(guid="g", title="Fire at  <i>temple</i>", summary="Crews attend.",
                          link="https://e.com/a?utm_source=x")).content_hash == h1
    changed = norm(FeedEntry(guid="g", title="Fire at temple", summary="Two injured.",
                             link="https://e.com/a"))
    assert changed.incident_id == norm(base).incident_id and changed.content_hash != h1
    with_cap = FeedEntry(guid="g", title="Fire at temple", summary="Crews attend.",
                         link="https://e.com/a", cap=CapInfo(severity="Minor"))
    worse = FeedEntry(guid="g", title="Fire at temple", summary="Crews attend.",
                      link="https://e.com/a", cap=CapInfo(severity="Severe"))
    assert norm(with_cap).content_hash != norm(worse).content_hash


def test_categories_cleaned_and_exercise_kept() -> None:
    inc = norm(FeedEntry(title="t", categories=["<b>Crime</b>", "Crime", " ", "UK"], exercise=True))
    assert inc.categories == ("Crime", "UK") and inc.exercise is True


def _rss(items: str, channel: str = "") -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
            f"{channel}{items}</channel></rss>").encode()


def test_incidents_from_bytes_duplicates_and_problems() -> None:
    body = _rss("<item><title>First</title><guid>dup</guid></item>"
                "<item><title>Second</title><guid>dup</guid></item>"
                "<item><title><![CDATA[<br/>]]></title><guid>empty</guid></item>"
                "<item><title>Third</title><link>/x?utm_campaign=a</link></item>")
    incidents, parsed, problems = incidents_from_bytes(body, FEED, first_seen=NOW)
    assert [i.title for i in incidents] == ["First", "Third"]
    assert incidents[1].url == "https://news.example.org/x"
    assert len(problems) == 2
    assert "entry 1 ('dup')" in problems[0] and "duplicate of entry 0" in problems[0]
    assert "entry 2 ('empty')" in problems[1] and "no title" in problems[1]
    assert len(parsed.entries) == 4


def test_incidents_from_bytes_defaults_first_seen_to_now() -> None:
    incidents, _, _ = incidents_from_bytes(_rss("<item><title>x</title></item>"), FEED)
    assert abs(incidents[0].first_seen - datetime.now(UTC)) < timedelta(minutes=1)
    assert incidents[0].published == incidents[0].first_seen


def test_html_to_text_edge_cases() -> None:
    assert html_to_text(None) == "" and html_to_text("") == ""
    assert html_to_text("a < b and c > d") == "a < b and c > d"
    assert html_to_text("5 &lt; 6") == "5 < 6"
    assert html_to_text("&amp;lt;b&amp;gt;bold&amp;lt;/b&amp;gt;") == "bold"
    assert html_to_text("<scr<script>ipt>alert(1)</script>") == "ipt>alert(1)"
    assert html_to_text("unclosed <a href='x") == "unclosed < a href='x"
    assert html_to_text("line\n\n\tbreaks   here") == "line breaks here"
    # html.parser asserts on this declaration; the fallback still yields text
    assert html_to_text("Bomb <b>hoax</b> <![x1[ more") == "Bomb hoax"


def test_an_escalated_gdacs_episode_is_new_content() -> None:
    def drought(episode: str, current: str = "true") -> FeedEntry:
        return FeedEntry(guid="DR1001", title="Orange drought alert in Kenya", summary="Drought.",
                         link="https://e.com/dr", cap=CapInfo(severity="Severe"),
                         categories=["gdacs:eventtype:DR", "gdacs:alertlevel:Orange",
                                     f"gdacs:episodealertlevel:{episode}", f"gdacs:iscurrent:{current}"])
    green, orange = norm(drought("Green")), norm(drought("Orange"))
    assert green.incident_id == orange.incident_id and green.content_hash != orange.content_hash
    assert norm(drought("Orange", "false")).content_hash != orange.content_hash
    plain = FeedEntry(guid="g", title="t", summary="s", categories=["weather"])
    assert norm(plain).content_hash == norm(FeedEntry(guid="g", title="t", summary="s")).content_hash
