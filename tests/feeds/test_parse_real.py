"""Real third-party feeds from ../shared/data/feeds (read-only, never copied into the repo)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from prevent.contracts import FeedKind
from prevent.feeds.catalog import FeedConfig
from prevent.feeds.normalize import incidents_from_bytes
from prevent.feeds.parse import FeedParseError, parse_feed

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "feeds"
KIND_BY_DIR = {"rss": FeedKind.RSS, "atom": FeedKind.ATOM, "rdf": FeedKind.RDF,
               "json": FeedKind.GEOJSON, "cap": FeedKind.CAP}
# Files whose breakage is the point of including them (see ../shared/data/README.md).
KNOWN_UNREADABLE = {"reuters_most_read_malformed.xml"}
FIRST_SEEN = datetime(2030, 1, 1, tzinfo=UTC)


def _files() -> list[Path]:
    if not DATA.is_dir():
        return []
    return sorted(p for p in DATA.glob("*/*") if p.is_file())


def _feed(path: Path, **overrides: object) -> FeedConfig:
    values: dict[str, object] = {"id": path.stem.lower().replace(".", "-")[:60],
                                 "url": f"file:{path}", "kind": KIND_BY_DIR[path.parent.name]}
    values.update(overrides)
    return FeedConfig.model_validate(values)


def _load(relative: str) -> bytes:
    path = DATA / relative
    if not path.is_file():
        pytest.skip(f"shared data not available: {path}")
    return path.read_bytes()


@pytest.mark.parametrize("path", _files() or [pytest.param(None, marks=pytest.mark.skip(
    reason=f"shared data not available: {DATA}"))], ids=lambda p: p.name if p else "none")
def test_every_real_file(path: Path) -> None:
    feed = _feed(path)
    body = path.read_bytes()
    if path.name in KNOWN_UNREADABLE:
        with pytest.raises(FeedParseError) as err:
            incidents_from_bytes(body, feed, first_seen=FIRST_SEEN)
        assert err.value.url == feed.url and err.value.line is not None
        return
    incidents, parsed, problems = incidents_from_bytes(body, feed, first_seen=FIRST_SEEN)
    assert parsed.entries, "every shared file except the malformed one has entries"
    assert problems == []
    assert len(incidents) == len(parsed.entries)
    for incident in incidents:
        assert incident.title.strip()
        assert "<" not in incident.title
        assert incident.published.utcoffset() == timedelta(0)
        assert incident.published <= FIRST_SEEN
        assert incident.feed_id == feed.id and incident.kind is feed.kind
        assert incident.url is None or incident.url.startswith(("http://", "https://"))
    assert len({i.incident_id for i in incidents}) == len(incidents)


def test_uol_undeclared_latin1_decodes() -> None:
    body = _load("rss/uol_noticias_undeclared_latin1.rss")
    feed = FeedConfig(id="uol", url="https://rss.uol.com.br/feed/noticias.xml", kind="rss",
                      language="pt-BR", country="BR")
    incidents, parsed, _ = incidents_from_bytes(
        body, feed, headers={"Content-Type": "application/rss+xml; charset=utf-8"},
        first_seen=FIRST_SEEN)
    titles = [i.title for i in incidents]
    assert "Ibope: Bolsonaro perde de Haddad, Ciro e Alckmin em simulações de 2º turno" in titles
    assert any("inquérito" in t for t in titles)
    assert not any("\ufffd" in t or "Ã" in t for t in titles)
    assert parsed.bozo and "windows-1252" in (parsed.bozo_reason or "")
    # "Seg, 24 Set 2018 19:42:40 -0300": Portuguese names feedparser does not read.
    first = next(i for i in incidents if i.title.startswith("Ibope"))
    assert first.published == datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC)
    # The feed's <language> is empty: the configured pt-BR is the prior, and the item's own
    # language (ISO 639-1, as the language identifier gives it) is what the incident carries.
    assert first.language == "pt"
    assert first.location is not None and first.location.country == "BR"


def test_gdacs_coordinates_country_and_severity() -> None:
    body = _load("rss/gdacs_rss_2019-12-30.xml")
    assert body.startswith(b"\xef\xbb\xbf")
    parsed = parse_feed(body, url="https://www.gdacs.org/xml/rss.xml", kind=FeedKind.RSS)
    assert len(parsed.entries) == 16
    assert parsed.self_url == "http://www.gdacs.org/xml/rss.xml"
    for entry in parsed.entries:
        assert entry.location is not None
        assert entry.location.lat is not None and entry.location.lon is not None
    calvinia = next(e for e in parsed.entries if e.guid == "TC1000643")
    assert calvinia.location is not None
    assert (calvinia.location.lat, calvinia.location.lon) == (-19.4, 59.8)
    assert calvinia.location.country == "MU" and calvinia.location.place == "Mauritius"
    assert calvinia.cap is not None and calvinia.cap.severity == "Minor"
    assert calvinia.cap.event == "Tropical cyclone"
    with_country = [e for e in parsed.entries if e.location and e.location.country]
    assert len(with_country) >= 12  # sea-only events legitimately carry no country
    assert all(len(e.location.country) == 2 for e in with_country if e.location)


def test_nws_cap_in_atom_carries_cap_info() -> None:
    body = _load("atom/nws_cap_atom_us_2018-08-15.xml")
    feed = FeedConfig(id="nws-us", url="https://alerts.weather.gov/cap/us.php?x=0",
                      kind="atom", country="US", language="en-US")
    incidents, _parsed, problems = incidents_from_bytes(body, feed, first_seen=FIRST_SEEN)
    assert problems == [] and len(incidents) == 163
    assert all(i.cap is not None for i in incidents)
    first = incidents[0]
    assert first.cap is not None
    assert (first.cap.event, first.cap.severity, first.cap.urgency, first.cap.certainty) == (
        "High Wind Warning", "Severe", "Expected", "Likely")
    assert first.cap.msg_type == "Alert" and first.cap.area == "Eastern Beaufort Sea Coast"
    severities = {i.cap.severity for i in incidents if i.cap}
    assert severities <= {"Extreme", "Severe", "Moderate", "Minor", "Unknown"}
    assert {"Severe", "Minor"} <= severities
    assert first.location is not None and first.location.country == "US"
    assert first.published == datetime(2018, 8, 15, 22, 52, tzinfo=UTC)


def test_usgs_geojson_herat_sequence() -> None:
    body = _load("json/usgs_significant_month_2023-10-11.geojson")
    feed = FeedConfig(id="usgs-significant", kind="geojson",
                      url="https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/"
                          "significant_month.geojson")
    incidents, parsed, problems = incidents_from_bytes(body, feed, first_seen=FIRST_SEEN)
    assert problems == [] and len(incidents) == 18
    assert parsed.title == "USGS Significant Earthquakes, Past Month"
    afghan = [i for i in incidents if "Afghanistan" in i.title]
    assert len(afghan) == 5
    for incident in afghan:
        assert incident.location is not None and incident.location.country == "AF"
        assert 34 < (incident.location.lat or 0) < 35 and 61 < (incident.location.lon or 0) < 63
    by_id = {i.cap.identifier: i for i in afghan if i.cap}
    expected = {"us6000len8": "Extreme", "us6000ldpg": "Severe"}
    for usgs_id, severity in expected.items():
        assert by_id[usgs_id].cap is not None
        assert by_id[usgs_id].cap.severity == severity
    assert {i.cap.severity for i in afghan if i.cap} == {"Extreme", "Severe", "Moderate"}
    red = by_id["us6000len8"]
    assert red.title == "M 6.3 - western Afghanistan"
    assert "PAGER alert level red" in red.summary and "6.3" in red.summary
    assert red.published == datetime(2023, 10, 11, 0, 41, 56, 160000, tzinfo=UTC)
    assert red.url == "https://earthquake.usgs.gov/earthquakes/eventpage/us6000len8"
    green = next(i for i in incidents if "Madang" in i.title)
    assert green.cap is not None and green.cap.severity == "Minor"
    assert green.location is not None and green.location.country == "PG"


def test_cap_tsunami_warning() -> None:
    body = _load("cap/wcatwc_tsunami_warning_2011.xml")
    parsed = parse_feed(body, url="https://wcatwc.arh.noaa.gov/cap.xml")
    assert parsed.format == "cap" and len(parsed.entries) == 1
    entry = parsed.entries[0]
    assert entry.cap is not None
    assert (entry.cap.severity, entry.cap.urgency, entry.cap.certainty) == (
        "Extreme", "Immediate", "Likely")
    assert entry.cap.event == "Tsunami Warning" and entry.cap.msg_type == "Update"
    assert entry.cap.identifier == "PAAQ-2-lqw6d6"
    assert entry.cap.area is not None and "Unimak Pass" in entry.cap.area
    assert entry.location is not None and entry.location.country == "US"
    assert (entry.location.lat, entry.location.lon) == (51.8, -171.4)  # EventLatLon
    # An update keys on the message it updates, so all updates share one incident id.
    assert entry.guid == "http://newwcatwc.arh.noaa.gov/tsuPortal/,PAAQ-1-lqw6d6"
    assert entry.published == datetime(2011, 9, 2, 11, 36, 50, tzinfo=UTC)
    assert entry.exercise is False


def test_cap_bilingual_uses_one_language() -> None:
    body = _load("cap/ec_cap-cp_thunderstorm_allclear_2012.xml")
    parsed = parse_feed(body, url="https://dd.weather.gc.ca/alerts/x.cap", kind=FeedKind.CAP)
    assert len(parsed.entries) == 1
    entry = parsed.entries[0]
    assert entry.language == "en-CA" and entry.title == "severe thunderstorm watch"
    assert entry.extra["other_languages"] == "fr-CA"
    assert entry.cap is not None and entry.cap.severity == "Minor"
    assert entry.cap.urgency == "Past" and entry.cap.msg_type == "Update"
    assert entry.location is not None and entry.location.lat is not None
    assert 41 < entry.location.lat < 43  # polygon around Windsor, Ontario
    assert entry.guid == "cap@ec.gc.ca,2.49.0.1.124.a3f342a4.2012"


def test_cap_bilingual_prefers_french_when_asked() -> None:
    from prevent.feeds.cap import parse_cap

    body = _load("cap/ec_cap-cp_thunderstorm_allclear_2012.xml")
    entry = parse_cap(body, url="x", preferred_languages=("fr",)).entries[0]
    assert entry.language == "fr-CA" and entry.title == "veille d'orages violents"


def test_rdf_and_emm() -> None:
    debian = parse_feed(_load("rdf/debian_news_2022-12.rdf"), url="https://www.debian.org/News/news.rdf")
    assert debian.format == "rss10" and debian.language == "en"
    assert debian.entries[0].published == datetime(2022, 12, 17, tzinfo=UTC) or \
        debian.entries[0].updated == datetime(2022, 12, 17, tzinfo=UTC)
    emm = parse_feed(_load("rss/emm_newsbrief_en_2022-06-21.xml"), url="https://emm.newsbrief.eu/rss")
    assert len(emm.entries) == 3
    assert all(e.language == "en" for e in emm.entries)
    assert all(e.location and e.location.lat is not None for e in emm.entries)


def test_usgs_atom_georss() -> None:
    parsed = parse_feed(_load("atom/usgs_all_hour_2018-12-07.atom"),
                        url="https://earthquake.usgs.gov/all_hour.atom")
    assert len(parsed.entries) == 20
    first = parsed.entries[0]
    assert first.location is not None
    assert (first.location.lat, first.location.lon) == (33.514168, -116.800163)
    assert "Magnitude 1" in first.categories
    assert parsed.self_url and parsed.self_url.endswith("all_hour.atom")
