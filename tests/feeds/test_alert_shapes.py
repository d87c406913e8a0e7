"""Alert feeds in the shapes other agencies publish them: NWS alerts as GeoJSON, the GDACS
event list, EMSC and GeoNet quakes, CAP-in-Atom with geocodes, MeteoAlarm's Atom. Small
documents written here in the same shape (no third-party file is copied)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from prevent.classification.sources import assess
from prevent.feeds.parse import FeedEntry, parse_feed
from prevent.feeds.text import country_from_geocode, country_from_geocodes

URL = "https://alerts.example.org/feed"


def _geojson(*properties: dict[str, Any], geometry: dict[str, Any] | None = None) -> bytes:
    features = [{"type": "Feature", "id": f"f{i}", "geometry": geometry, "properties": p}
                for i, p in enumerate(properties)]
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def _assess(entry: FeedEntry) -> int | None:
    cap = entry.cap
    found = assess(entry.categories, cap.severity if cap else None, cap.msg_type if cap else None,
                   cap.urgency if cap else None, cap.certainty if cap else None, cap.event if cap else None)
    return found.severity if found else None


# --------------------------------------------------------------------------- NWS GeoJSON

NWS_ALERT = {
    "id": "urn:oid:2.49.0.1.840.0.aaa.001.1", "areaDesc": "Lee, AL; Macon, AL",
    "geocode": {"SAME": ["001081", "001087"], "UGC": ["ALC081", "ALC087"]},
    "sent": "2026-03-10T14:05:00-05:00", "effective": "2026-03-10T14:05:00-05:00",
    "status": "Actual", "messageType": "Alert", "category": "Met", "severity": "Extreme",
    "certainty": "Observed", "urgency": "Immediate", "event": "Tornado Warning",
    "headline": "Tornado Warning issued March 10 at 2:05PM CDT by NWS Birmingham AL",
    "description": "A confirmed tornado was located near Auburn.", "instruction": "Take cover now.",
    "language": "en-US",
}


def test_nws_geojson_alert_reads_its_cap_fields() -> None:
    entry = parse_feed(_geojson(NWS_ALERT), url=URL).entries[0]
    assert entry.title == NWS_ALERT["headline"]
    assert entry.summary == "A confirmed tornado was located near Auburn. Take cover now."
    assert entry.published == datetime(2026, 3, 10, 19, 5, tzinfo=UTC)
    assert entry.cap is not None
    assert (entry.cap.event, entry.cap.severity, entry.cap.msg_type) == (
        "Tornado Warning", "Extreme", "Alert")
    assert entry.location is not None and entry.location.country == "US"
    assert entry.exercise is False
    assert _assess(entry) == 4


def test_nws_geojson_test_message_and_cancel_never_alarm() -> None:
    test = NWS_ALERT | {"status": "Test", "headline": "TEST Tornado Warning"}
    cancel = NWS_ALERT | {"messageType": "Cancel", "severity": "Minor", "urgency": "Past",
                          "headline": "The Tornado Warning has been cancelled."}
    entries = parse_feed(_geojson(test, cancel), url=URL).entries
    assert entries[0].exercise and entries[0].extra["cap_status"] == "Test"
    assert _assess(entries[1]) == 1


def test_nws_geojson_zone_codes_place_it_where_the_area_names_do_not() -> None:
    marine = NWS_ALERT | {"areaDesc": "Coastal waters from Port Fourchon to Lower Atchafalaya River",
                          "geocode": {"UGC": ["GMZ550", "GMZ552"]}}
    puerto_rico = NWS_ALERT | {"areaDesc": "San Juan and Vicinity", "geocode": {"UGC": ["PRZ001"]}}
    entries = parse_feed(_geojson(marine, puerto_rico), url=URL).entries
    assert [e.location.country for e in entries if e.location] == ["US", "PR"]


def test_a_watch_is_at_most_2_and_a_possible_without_severity_is_not_assessed() -> None:
    watch = NWS_ALERT | {"event": "Tornado Watch", "certainty": "Possible", "urgency": "Future"}
    assert _assess(parse_feed(_geojson(watch), url=URL).entries[0]) == 2
    assert assess([], cap_severity="Unknown", cap_certainty="Possible") is None
    assert assess([], cap_severity="Minor", cap_certainty="Possible").severity == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(("event", "category", "severity", "expected"), [
    # a weather service's yellow or orange warning is routine: no alarm, no welfare outreach
    ("thunderstorm", None, "Severe", 1),
    ("Severe Thunderstorm Warning", "Met", "Severe", 1),
    ("high-temperature", None, "Severe", 1),
    ("Wind", "Met", "Moderate", 1),
    ("snow-ice", None, "Moderate", 1),
    # its red warning, and the hazards that are never routine, keep the sender's level
    ("thunderstorm", None, "Extreme", 4),
    ("Tropical Storm Warning", "Met", "Severe", 3),
    ("Flood Warning", "Met", "Severe", 3),
    ("rain-flood", None, "Severe", 3),
    ("Tsunami Warning", "Geo", "Severe", 3),
    ("Tornado Warning", "Met", "Severe", 3),
    ("Flood Watch", "Met", "Moderate", 2),
])
def test_a_routine_weather_warning_is_at_most_1(event: str, category: str | None, severity: str,
                                                 expected: int) -> None:
    found = assess([category] if category else [], cap_severity=severity, cap_certainty="Likely",
                   cap_event=event)
    assert found is not None and found.severity == expected, found


# --------------------------------------------------------------------------- GDACS GeoJSON

GDACS_EVENT = {
    "eventtype": "FL", "eventid": 1102000, "episodeid": 7, "name": "Flood in Pakistan",
    "htmldescription": "<b>Orange</b> flood alert in Pakistan", "alertlevel": "Orange",
    "episodealertlevel": "Orange", "istemporary": "false", "iscurrent": "true",
    "country": "Pakistan", "iso3": "PAK", "fromdate": "2026-08-20T00:00:00",
    "datemodified": "2026-08-25T06:00:00",
    "url": {"report": "https://www.gdacs.example/report.aspx?eventid=1102000&eventtype=FL"},
}


def test_gdacs_event_list_carries_its_own_assessment() -> None:
    drought = GDACS_EVENT | {"eventtype": "DR", "name": "Drought in Kenya", "country": "Kenya",
                             "iso3": "KEN", "episodealertlevel": "Green"}
    old = GDACS_EVENT | {"eventtype": "DR", "iscurrent": False, "name": "Drought in Somalia"}
    body = _geojson(GDACS_EVENT, drought, old, geometry={"type": "Point", "coordinates": [68.3, 26.1]})
    flood, dr, stale = parse_feed(body, url=URL).entries
    assert flood.title == "Flood in Pakistan" and flood.summary == "Orange flood alert in Pakistan"
    assert flood.published == datetime(2026, 8, 20, tzinfo=UTC)
    assert flood.link and "eventid=1102000" in flood.link
    assert flood.guid == "FL1102000"  # the event, as in the RSS: a new episode updates it
    assert flood.location is not None and flood.location.country == "PK"
    assert "gdacs:alertlevel:Orange" in flood.categories
    assert (_assess(flood), _assess(dr), _assess(stale)) == (3, 1, 1)
    assert dr.location is not None and dr.location.country == "KE"


# --------------------------------------------------------------------------- EMSC, GeoNet

def test_emsc_quake_is_titled_and_placed_by_its_region() -> None:
    emsc = {"unid": "20260101_0000001", "time": "2026-01-01T10:00:00.0Z", "mag": 4.1, "magtype": "ml",
            "depth": 7.0, "flynn_region": "SWITZERLAND", "evtype": "ke", "auth": "SED",
            "lastupdate": "2026-01-01T10:05:00.0Z"}
    # Near the border: the nearest large city is Italian, the region says Switzerland.
    entry = parse_feed(_geojson(emsc, geometry={"type": "Point", "coordinates": [8.0, 46.1, -7.0]}),
                       url=URL).entries[0]
    assert entry.title == "M 4.1 - Switzerland"
    assert entry.summary is not None and "earthquake" in entry.summary and "Depth 7 km" in entry.summary
    assert entry.location is not None and entry.location.country == "CH"
    assert entry.updated == datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    assert _assess(entry) is None  # no PAGER: no invented "urgency Past" caps it


def test_geonet_quake_without_a_title_is_kept() -> None:
    geonet = {"publicID": "2026p000001", "time": "2026-02-02T02:02:02.000Z", "depth": 12.3456,
              "magnitude": 5.4321, "mmi": 5, "locality": "10 km north of Example Town", "quality": "best"}
    entry = parse_feed(_geojson(geonet, geometry={"type": "Point", "coordinates": [174.8, -41.3]}),
                       url=URL).entries[0]
    assert entry.title == "M 5.4 - 10 km north of Example Town"
    assert entry.summary is not None and "Depth 12.3 km" in entry.summary
    assert entry.categories == ["earthquake"]


# --------------------------------------------------------------------------- CAP in Atom

def _atom(entries: str) -> bytes:
    return (f'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" '
            f'xmlns:cap="urn:oasis:names:tc:emergency:cap:1.1"><title>Alerts</title>'
            f"<id>urn:x</id><updated>2026-05-01T00:00:00Z</updated>{entries}</feed>").encode()


def _cap_entry(n: int, area: str, geocode: str = "", polygon: str = "", extra: str = "") -> str:
    return (f"<entry><id>urn:e{n}</id><updated>2026-05-01T00:00:00Z</updated>"
            f"<title>Flash Flood Warning {n}</title><summary>Flooding in Birmingham.</summary>"
            f"<cap:event>Flash Flood Warning</cap:event><cap:status>Actual</cap:status>"
            f"<cap:msgType>Alert</cap:msgType><cap:urgency>Immediate</cap:urgency>"
            f"<cap:severity>Severe</cap:severity><cap:certainty>Likely</cap:certainty>"
            f"<cap:areaDesc>{area}</cap:areaDesc><cap:polygon>{polygon}</cap:polygon>"
            f"<cap:geocode>{geocode}</cap:geocode>{extra}</entry>")


def test_cap_in_atom_geocodes_place_the_alert() -> None:
    nws = ("<valueName>FIPS6</valueName><value>001073 001117</value>"
           "<valueName>UGC</valueName><value>ALC073 ALC117</value>")
    param = "<cap:parameter><valueName>VTEC</valueName><value>/O.NEW.KBMX.FF.W.0001/</value></cap:parameter>"
    body = _atom(_cap_entry(1, "Jefferson; Shelby", nws, "33.5,-86.9 33.6,-86.7 33.4,-86.7", param)
                 + _cap_entry(2, "Blount"))
    first, second = parse_feed(body, url=URL).entries
    assert first.location is not None and first.location.country == "US"
    assert first.location.place == "Jefferson; Shelby"
    assert (first.location.lat, first.location.lon) == (33.5, -86.766667)
    assert second.location is not None and second.location.country is None  # nothing says where
    assert second.location.place == "Blount"


def test_meteoalarm_atom_message_type_and_emma_id() -> None:
    meteoalarm = ('<entry><id>urn:m1</id><updated>2026-07-15T19:00:00Z</updated>'
                  "<title>Orange Thunderstorm Warning - Example County</title>"
                  "<cap:geocode><valueName>EMMA_ID</valueName><value>AT702</value></cap:geocode>"
                  "<cap:areaDesc>Example County</cap:areaDesc><cap:event>thunderstorm</cap:event>"
                  "<cap:severity>Severe</cap:severity><cap:certainty>Likely</cap:certainty>"
                  "<cap:urgency>Immediate</cap:urgency><cap:status>Actual</cap:status>"
                  "<cap:message_type>Cancel</cap:message_type></entry>")
    entry = parse_feed(_atom(meteoalarm), url=URL).entries[0]
    assert entry.cap is not None and entry.cap.msg_type == "Cancel"
    assert entry.location is not None and entry.location.country == "AT"
    assert _assess(entry) == 1


def test_a_malformed_cap_atom_still_parses_its_entries() -> None:
    body = _atom(_cap_entry(1, "Jefferson", "<valueName>UGC</valueName><value>ALC073</value>")
                 ).replace(b"</feed>", b"<entry><title>broken & half")
    entries = parse_feed(body, url=URL).entries
    assert entries and entries[0].cap is not None  # geocodes skipped, nothing lost


def test_standalone_cap_geocode_places_the_alert() -> None:
    body = b"""<?xml version="1.0"?><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
      <identifier>x1</identifier><sender>s@example.org</sender><sent>2026-06-01T10:00:00+02:00</sent>
      <status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
      <info><language>el-GR</language><category>Met</category><event>Wind</event>
      <urgency>Immediate</urgency><severity>Severe</severity><certainty>Likely</certainty>
      <area><areaDesc>Example region</areaDesc>
      <geocode><valueName>NUTS3</valueName><value>EL301</value></geocode></area></info></alert>"""
    entry = parse_feed(body, url=URL).entries[0]
    assert entry.location is not None and entry.location.country == "GR"


@pytest.mark.parametrize(("name", "value", "country"), [
    ("UGC", "NMZ508", "US"), ("UGC", "GUZ001", "GU"), ("ugc", "alc081", "US"), ("UGC", "NM508", None),
    ("FIPS6", "035001", "US"), ("FIPS6", "072127", "PR"), ("FIPS6", "35001", None),
    ("profile:CAP-CP:Location:0.3", "3506008", "CA"), ("EMMA_ID", "DE202", "DE"),
    ("EMMA_ID", "UK012", "GB"), ("NUTS2", "EL30", "GR"), ("EMMA_ID", "611104", None),
    ("SAME", "001081", None), ("UGC", "", None),
])
def test_country_from_geocode(name: str, value: str, country: str | None) -> None:
    assert country_from_geocode(name, value) == country


def test_country_from_geocodes_needs_agreement() -> None:
    assert country_from_geocodes([("UGC", "GUZ001 GUZ002")]) == "GU"
    assert country_from_geocodes([("UGC", "GUZ001"), ("UGC", "MPZ001")]) is None
    assert country_from_geocodes([("SAME", "001081"), ("UGC", "ALC081")]) == "US"


# --------------------------------------------------------------------------- robustness

def test_non_finite_numbers_never_stop_the_feed() -> None:
    body = (b'{"type": "FeatureCollection", "features": ['
            b'{"type": "Feature", "geometry": null, "properties": {"mag": 5.1, "sig": NaN, "place": "a"}},'
            b'{"type": "Feature", "geometry": null,'
            b' "properties": {"mag": Infinity, "sig": 1e400, "place": "b"}},'
            b'{"type": "Feature", "geometry": null, "properties": {"mag": 4.2, "sig": 300, "place": "c"}}]}')
    entries = parse_feed(body, url=URL).entries
    assert [e.title for e in entries] == ["M 5.1 - a", "b", "M 4.2 - c"]
    assert "usgs:sig:300" in entries[2].categories and not any("sig" in c for c in entries[0].categories)


def test_an_unreadable_feature_is_reported_and_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    from prevent.feeds import geojson

    real = geojson._entry

    def odd(feature: dict[str, Any]) -> FeedEntry | None:
        if feature["properties"].get("place") == "bad":
            raise ValueError("odd value")
        return real(feature)

    monkeypatch.setattr(geojson, "_entry", odd)
    parsed = parse_feed(_geojson({"mag": 3.0, "place": "bad"}, {"mag": 3.5, "place": "good"}), url=URL)
    assert [e.title for e in parsed.entries] == ["M 3.5 - good"]
    assert parsed.bozo_reason is not None and "feature 0: ValueError: odd value" in parsed.bozo_reason


def test_a_truncated_cap_names_its_position_once() -> None:
    from prevent.feeds.parse import FeedParseError

    body = b'<?xml version="1.0"?>\n<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">\n<info><event>x'
    with pytest.raises(FeedParseError) as caught:
        parse_feed(body, url=URL)
    assert str(caught.value) == f"{URL}: malformed CAP: no element found at line 3, column 14"


# --------------------------------------------------------------------------- JSON Feed

def test_json_feed_items_are_entries() -> None:
    from prevent.feeds.parse import FeedParseError

    feed = {"version": "https://jsonfeed.org/version/1.1", "title": "Alerts", "language": "en_gb",
            "home_page_url": "https://alerts.example.org/",
            "items": [{"id": "a1", "url": "https://alerts.example.org/a1",
                       "title": "Floods in Sylhet & Sunamganj",
                       "content_html": "<p>Floods <b>kill</b> 12</p>",
                       "date_published": "2026-06-20T08:00:00+06:00", "tags": ["flood", "flood"],
                       "language": "bn"},
                      {"id": 2, "title": "Cyclone warning", "summary": "Signal 7 hoisted."}, "junk"]}
    parsed = parse_feed(json.dumps(feed).encode(), url=URL)
    first, second = parsed.entries
    assert parsed.format == "json11" and parsed.language == "en-GB" and parsed.bozo
    assert (first.guid, first.title, first.link) == (
        "a1", "Floods in Sylhet & Sunamganj", "https://alerts.example.org/a1")
    assert first.summary == "<p>Floods <b>kill</b> 12</p>" and first.categories == ["flood"]
    assert first.published == datetime(2026, 6, 20, 2, tzinfo=UTC) and first.language == "bn"
    assert (second.guid, second.summary, second.language) == ("2", "Signal 7 hoisted.", "en-GB")
    with pytest.raises(FeedParseError, match="JSON Feed without an items list"):
        parse_feed(b'{"version": "https://jsonfeed.org/version/1"}', url=URL)


def test_a_system_message_is_never_a_real_event() -> None:
    heartbeat = NWS_ALERT | {"status": "System", "headline": "KEEPALIVE", "event": "Administrative Message"}
    assert parse_feed(_geojson(heartbeat), url=URL).entries[0].exercise
