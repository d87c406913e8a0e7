"""Small inline documents for the quirks real feeds have one at a time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from prevent.contracts import FeedKind
from prevent.feeds.parse import FeedParseError, parse_datetime, parse_feed

URL = "https://news.example.org/world/feed.xml"


def rss(items: str, channel: str = "", *, decl: str = '<?xml version="1.0" encoding="utf-8"?>',
        ns: str = "") -> bytes:
    return (f'{decl}\n<rss version="2.0" {ns}><channel><title>Example</title>'
            f"<link>https://news.example.org/</link>{channel}{items}</channel></rss>").encode()


def test_declared_utf8_but_latin1_bytes() -> None:
    body = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
            "<item><title>Explosão em São Paulo</title><guid>1</guid></item>"
            "</channel></rss>").encode("latin-1")
    parsed = parse_feed(body, url=URL, headers={"Content-Type": "text/xml; charset=utf-8"})
    assert parsed.entries[0].title == "Explosão em São Paulo"
    assert parsed.bozo and parsed.bozo_reason


def test_http_charset_wins_over_wrong_declaration() -> None:
    body = ('<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel>'
            "<title>t</title><item><title>Синагога</title><guid>1</guid></item>"
            "</channel></rss>").encode()
    parsed = parse_feed(body, url=URL, headers={"content-type": "application/xml; charset=utf-8"})
    assert parsed.entries[0].title == "Синагога"


def test_ttl_and_hub_and_self() -> None:
    body = rss("<item><title>a</title><guid>1</guid></item>",
               '<ttl>45</ttl><atom:link rel="hub" href="https://pubsubhubbub.example/"/>'
               '<atom:link rel="self" href="https://news.example.org/world/feed.xml"/>',
               ns='xmlns:atom="http://www.w3.org/2005/Atom"')
    parsed = parse_feed(body, url=URL)
    assert parsed.ttl_minutes == 45
    assert parsed.hub_url == "https://pubsubhubbub.example/"
    assert parsed.self_url == URL
    assert parsed.title == "Example" and parsed.format == "rss20"


@pytest.mark.parametrize(("period", "frequency", "minutes"), [
    ("hourly", "2", 30), ("daily", "", 1440), ("hourly", "7", 9), ("weekly", "1", 10080)])
def test_sy_update_period(period: str, frequency: str, minutes: int) -> None:
    freq = f"<sy:updateFrequency>{frequency}</sy:updateFrequency>" if frequency else ""
    body = rss("<item><title>a</title></item>",
               f"<sy:updatePeriod>{period}</sy:updatePeriod>{freq}",
               ns='xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"')
    assert parse_feed(body, url=URL).ttl_minutes == minutes


def test_atom_hub_link() -> None:
    body = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>
    <link rel="hub" href="https://hub.example/"/><link rel="self" href="https://x.example/a"/>
    <entry><id>tag:x,1</id><title type="html">&lt;b&gt;Bold&lt;/b&gt; news</title>
    <updated>2024-05-01T10:00:00+02:00</updated><link href="/story/1"/></entry></feed>"""
    parsed = parse_feed(body, url="https://x.example/atom.xml")
    assert parsed.hub_url == "https://hub.example/" and parsed.ttl_minutes is None
    entry = parsed.entries[0]
    assert entry.guid == "tag:x,1"
    assert entry.updated == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert entry.link == "/story/1"  # raw: normalize resolves it against the feed URL


def test_html_and_script_in_title_stay_raw_in_entry() -> None:
    body = rss("<item><title><![CDATA[<b>Attack</b> on <script>alert(1)</script>mosque]]></title>"
               "<description>&lt;p&gt;Police &amp;amp; fire&lt;/p&gt;</description></item>")
    entry = parse_feed(body, url=URL).entries[0]
    # parse keeps what the source said; normalize makes text of it
    assert entry.title is not None and "<script>" in entry.title


def test_missing_dates_and_relative_link() -> None:
    body = rss("<item><title>a</title><link>../story/7?utm_source=rss</link></item>")
    entry = parse_feed(body, url=URL).entries[0]
    assert entry.published is None and entry.updated is None and entry.guid is None
    assert entry.link == "../story/7?utm_source=rss"


def test_georss_and_w3c_geo_and_categories() -> None:
    body = rss("<item><title>a</title><georss:point>51.5 -0.12</georss:point>"
               "<category>Crime</category><category>Crime</category><category>UK</category>"
               "</item><item><title>b</title><geo:lat>48.85</geo:lat><geo:long>2.35</geo:long>"
               "</item><item><title>c</title><georss:point>123 456</georss:point></item>",
               ns='xmlns:georss="http://www.georss.org/georss" '
                  'xmlns:geo="http://www.w3.org/2003/01/geo/wgs84_pos#"')
    a, b, c = parse_feed(body, url=URL).entries
    assert a.location is not None and (a.location.lat, a.location.lon) == (51.5, -0.12)
    assert a.categories == ["Crime", "UK"]
    assert b.location is not None and (b.location.lat, b.location.lon) == (48.85, 2.35)
    assert c.location is None  # out of range coordinates are dropped, not an error


def test_cap_fields_in_rss_with_other_prefix() -> None:
    body = rss("<item><title>Flood</title><alrt:severity>Severe</alrt:severity>"
               "<alrt:urgency>Immediate</alrt:urgency><alrt:status>Exercise</alrt:status></item>",
               ns='xmlns:alrt="urn:oasis:names:tc:emergency:cap:1.2"')
    entry = parse_feed(body, url=URL).entries[0]
    assert entry.cap is not None and entry.cap.severity == "Severe"
    assert entry.cap.urgency == "Immediate"
    assert entry.exercise is True


def test_empty_feed_is_not_an_error() -> None:
    parsed = parse_feed(rss(""), url=URL)
    assert parsed.entries == [] and not parsed.bozo


@pytest.mark.parametrize("body", [b"", b"   ", b"<html><body><p>Not found</p></body></html>",
                                  b"<rss><channel><title>x</ti", b"\x00\x01\x02garbage"])
def test_unreadable_bodies_raise(body: bytes) -> None:
    with pytest.raises(FeedParseError) as err:
        parse_feed(body, url=URL)
    assert err.value.url == URL and URL in str(err.value)


def test_feedparser_internal_errors_become_parse_errors() -> None:
    # A stray byte in the declared encoding name makes feedparser's sniffing raise
    # (ValueError for NUL, UnicodeDecodeError for 0x80) instead of reporting bozo.
    for junk in (b"\x00", b"\x80"):
        body = (b'<?xml version="1.0" encoding="' + junk + b'UTF-8"?>\n'
                b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title></feed>')
        with pytest.raises(FeedParseError, match="unreadable"):
            parse_feed(body, url=URL)


def test_fatal_error_names_line_and_column() -> None:
    body = b'<?xml version="1.0"?>\n<rss version="2.0">\n<channel><title>t</title>\n<bad <<\n'
    with pytest.raises(FeedParseError) as err:
        parse_feed(body, url=URL)
    assert err.value.line == 4 and err.value.column is not None
    assert "line 4" in str(err.value)


def test_malformed_but_recovered_is_bozo_not_fatal() -> None:
    body = rss("<item><title>AT&T outage</title><guid>1</guid></item>")
    parsed = parse_feed(body, url=URL)
    assert not parsed.bozo  # the bare "&" was escaped before feedparser saw it
    assert parsed.entries[0].title == "AT&T outage"
    body = rss("<item><title>Bomb &nbsp; threat</title><guid>1</guid></item><item><title>x")
    parsed = parse_feed(body, url=URL)
    assert parsed.bozo and parsed.bozo_reason and "line" in parsed.bozo_reason
    assert parsed.entries[0].guid == "1" and "threat" in (parsed.entries[0].title or "")


def test_geojson_errors() -> None:
    with pytest.raises(FeedParseError) as err:
        parse_feed(b'{"type": "FeatureCollection",\n "features": [}', url=URL)
    assert err.value.line == 2
    with pytest.raises(FeedParseError, match="FeatureCollection"):
        parse_feed(b'{"hello": 1}', url=URL)
    with pytest.raises(FeedParseError):
        parse_feed(b"<rss/>", url=URL, kind=FeedKind.GEOJSON)


def test_geojson_generic_feature() -> None:
    body = b"""{"type":"Feature","id":"f1","properties":{"name":"Riot in Lyon",
    "description":"<p>Cars burned</p>","published":"2024-03-01T12:00:00Z"},
    "geometry":{"type":"Polygon","coordinates":[[[4.8,45.7],[4.9,45.7],[4.9,45.8],[4.8,45.8]]]}}"""
    entry = parse_feed(body, url=URL).entries[0]
    assert entry.title == "Riot in Lyon" and entry.cap is None
    assert entry.published == datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert entry.location is None or entry.location.lat is not None


@pytest.mark.parametrize(("raw", "expected"), [
    ("Seg, 24 Set 2018 19:42:40 -0300", datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC)),
    ("lun., 3 févr. 2020 08:00:00 +0100", datetime(2020, 2, 3, 7, 0, tzinfo=UTC)),
    ("Mi, 17 Dez 2014 10:00:00 GMT", datetime(2014, 12, 17, 10, 0, tzinfo=UTC)),
    ("2011-09-02T11:36:50-00:00", datetime(2011, 9, 2, 11, 36, 50, tzinfo=UTC)),
    ("Tue, 21 Jun 2022 03:32:00 +0200", datetime(2022, 6, 21, 1, 32, tzinfo=UTC)),
    ("Wed, 19 Feb 2012 22:40:00 GMT-01:01", datetime(2012, 2, 19, 23, 41, tzinfo=UTC)),
    ("Thu, 01 Jan 04 19:48:21 EST", datetime(2004, 1, 2, 0, 48, 21, tzinfo=UTC)),
    ("Thu, 01 Jan 2004", datetime(2004, 1, 1, tzinfo=UTC)),
    ("Sun Jan  4 16:29:06 2004", datetime(2004, 1, 4, 16, 29, 6, tzinfo=UTC)),
    ("2004-07-08 23:56:58", datetime(2004, 7, 8, 23, 56, 58, tzinfo=UTC)),
    ("9999-12-31T23:59:59-01:00", None),  # past datetime.max in UTC: no date, not a crash
    ("not a date", None), ("", None),
])
def test_parse_datetime(raw: str, expected: datetime | None) -> None:
    assert parse_datetime(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    # feedparser's own formats, which ``parse_datetime`` does not repeat: they arrive through
    # its public ``*_parsed`` fields.
    ("Fri, 2006/09/15 08:19:53 EDT", datetime(2006, 9, 15, 12, 19, 53, tzinfo=UTC)),  # Perforce
    ("Thu, 30 Apr 2015 08:57:00 MEST", datetime(2015, 4, 30, 6, 57, tzinfo=UTC)),
    ("2003-12", datetime(2003, 12, 1, tzinfo=UTC)),  # W3DTF, year and month
])
def test_feed_dates_in_feedparser_formats(raw: str, expected: datetime) -> None:
    body = rss(f"<item><title>a</title><guid>1</guid><pubDate>{raw}</pubDate></item>")
    assert parse_feed(body, url=URL).entries[0].published == expected
