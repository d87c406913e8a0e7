"""GeoJSON FeatureCollections: the USGS earthquake summary feeds, NWS alerts, GDACS events,
EMSC and GeoNet quakes. A JSON Feed (jsonfeed.org) goes on to ``jsonfeed``.

USGS properties: title, place, time/updated (epoch ms), url, mag, alert (PAGER colour),
tsunami, status, type; geometry is a Point [lon, lat, depth km].
NWS (api.weather.gov/alerts): the CAP fields as properties (headline, event, severity,
urgency, certainty, messageType, status, sent, areaDesc, geocode.UGC).
GDACS (gdacsapi events): name, htmldescription, eventtype, alertlevel, episodealertlevel,
iscurrent, iso3/country, fromdate (UTC without a zone), url.report.
EMSC (SeismicPortal): unid, time, mag, flynn_region (capitals), evtype, depth (km, positive;
the geometry's third coordinate is an elevation). GeoNet: publicID, time, magnitude, mmi,
locality, depth.
Other GeoJSON feeds work when they use title/name, description and url/link.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from prevent.contracts import CapInfo, Location
from prevent.feeds.jsonfeed import is_json_feed, parse_json_feed
from prevent.feeds.parse import (
    NOT_REAL_STATUS,
    FeedEntry,
    FeedParseError,
    ParsedFeed,
    gdacs_cap,
    gdacs_categories,
    gdacs_country,
    parse_datetime,
)
from prevent.feeds.text import country_from_geocodes, country_from_place, html_to_text

# USGS PAGER estimates impact (fatalities, losses); its colours map onto CAP severity.
PAGER_SEVERITY = {"red": "Extreme", "orange": "Severe", "yellow": "Moderate", "green": "Minor"}
_PAGER_MEANING = {"red": "extensive damage and fatalities likely",
                  "orange": "significant damage and fatalities likely",
                  "yellow": "some damage and fatalities possible",
                  "green": "little or no damage expected"}


def looks_like_json(body: bytes, headers: Mapping[str, str]) -> bool:
    if "json" in headers.get("content-type", "").lower():
        return True
    head = body[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] in (b"{", b"[")


def parse_geojson(body: bytes, *, url: str) -> ParsedFeed:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise FeedParseError(url, f"invalid JSON: {exc.msg}", line=exc.lineno,
                             column=exc.colno) from None
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise FeedParseError(url, f"invalid JSON: {type(exc).__name__}") from None
    if is_json_feed(data):
        return parse_json_feed(data, url=url)
    if isinstance(data, dict) and data.get("type") == "Feature":
        data = {"type": "FeatureCollection", "features": [data]}
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" \
            or not isinstance(data.get("features"), list):
        raise FeedParseError(url, "not a GeoJSON FeatureCollection or a JSON Feed")
    metadata = data.get("metadata")
    meta: dict[str, Any] = metadata if isinstance(metadata, dict) else {}
    entries: list[FeedEntry] = []
    unreadable: list[str] = []
    for number, feature in enumerate(data["features"]):
        if not isinstance(feature, dict):
            continue
        try:
            if entry := _entry(feature):
                entries.append(entry)
        except (TypeError, ValueError, OverflowError, AttributeError) as exc:
            # One odd feature is that feature's problem, never the rest of the feed's.
            unreadable.append(f"feature {number}: {type(exc).__name__}: {exc}")
    skipped = len(data["features"]) - len(entries)
    reason = f"{skipped} feature(s) skipped (not objects, deleted or unreadable)" if skipped else None
    if reason and unreadable:
        reason += f"; {unreadable[0]}" + (f" and {len(unreadable) - 1} more" if len(unreadable) > 1 else "")
    return ParsedFeed(
        entries=entries,
        bozo=bool(skipped),
        bozo_reason=reason,
        title=_str(meta.get("title")),
        self_url=_str(meta.get("url")),
        format="geojson",
    )


def _str(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _float(value: Any) -> float | None:
    """A finite number, else None: JSON parsers accept NaN and 1e400 (infinity)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _time(value: Any) -> datetime | None:
    """Epoch milliseconds (USGS) or an ISO 8601 string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return parse_datetime(value)


def _entry(feature: Mapping[str, Any]) -> FeedEntry | None:
    props = feature.get("properties")
    props = props if isinstance(props, dict) else {}
    if props.get("status") == "deleted":  # USGS retracted the event
        return None
    if _str(props.get("messageType")) or (_str(props.get("severity")) and _str(props.get("event"))):
        return _cap_entry(feature, props)
    if _str(props.get("alertlevel")) and _str(props.get("eventtype")):
        return _gdacs_entry(feature, props)
    # USGS "place"; EMSC/SeismicPortal "flynn_region"; GeoNet "locality" and "magnitude".
    place = _str(props.get("place")) or _region(props.get("flynn_region")) or _str(props.get("locality"))
    mag = _float(props.get("mag"))
    if mag is None and (raw := _float(props.get("magnitude"))) is not None:
        mag = round(raw, 1)  # GeoNet gives 4.160633307
    alert = (_str(props.get("alert")) or "").lower() or None
    event_type = _str(props.get("type")) or _quake_type(props)
    cap = None
    if alert or mag is not None:
        cap = CapInfo(identifier=_str(feature.get("id")) or _str(props.get("code")),
                      msg_type="Alert", event=(event_type or "event").capitalize(),
                      severity=PAGER_SEVERITY.get(alert or "", "Unknown"),
                      # USGS's own events only (its content hash has always had it): on
                      # EMSC or GeoNet an invented "Past" would cap the quake at 1 as if over.
                      urgency="Past" if "sig" in props else None,
                      certainty="Observed", area=place)
    sig = _float(props.get("sig"))
    sig_tag = f"usgs:sig:{int(sig)}" if sig is not None and mag is not None else None
    tsunami = "usgs:tsunami:1" if props.get("tsunami") in (1, "1", True) else None
    categories = [c for c in (event_type, f"pager:{alert}" if alert else None, sig_tag, tsunami) if c]
    return FeedEntry(
        guid=_str(feature.get("id")) or _str(props.get("ids")),
        link=_str(props.get("url")) or _str(props.get("link")),
        title=_str(props.get("title")) or _str(props.get("name")) or _quake_title(mag, place),
        summary=_summary(props, place, mag, alert, event_type, feature.get("geometry")),
        published=_time(props.get("time")) or _time(props.get("published")),
        updated=_time(props.get("updated")) or _time(props.get("lastupdate")),
        language="en" if mag is not None else None,  # the summary below is written in English
        categories=categories,
        location=_location(feature.get("geometry"), place),
        cap=cap,
        extra={k: str(v) for k, v in (("mag", mag), ("alert", alert)) if v is not None},
    )


def _summary(props: Mapping[str, Any], place: str | None, mag: float | None,
             alert: str | None, event_type: str | None, geometry: Any) -> str | None:
    given = _str(props.get("description")) or _str(props.get("summary"))
    parts = [given] if given else []
    if mag is not None:
        what = event_type or "event"
        parts.append(f"Magnitude {mag:g} {what}" + (f", {place}." if place else "."))
    if alert:
        meaning = _PAGER_MEANING.get(alert)
        parts.append(f"USGS PAGER alert level {alert}" + (f": {meaning}." if meaning else "."))
    depth = _float(props.get("depth"))  # EMSC and GeoNet: km, positive down
    if depth is None:
        depth = _depth(geometry)  # USGS: the third coordinate (EMSC's is an elevation)
    if depth is not None and mag is not None:
        parts.append(f"Depth {round(depth, 1):g} km.")
    if props.get("tsunami") in (1, "1", True):
        parts.append("Tsunami flag set: check the regional tsunami warning centre.")
    return " ".join(parts) or None


# EMSC event types that are earthquakes (known, suspected, induced); others are explosions,
# rockbursts, landslides.
_EMSC_QUAKES = frozenset({"ke", "se", "ki", "si"})


def _quake_type(props: Mapping[str, Any]) -> str | None:
    """"earthquake" for an EMSC earthquake and a GeoNet quake (which names no type)."""
    evtype = _str(props.get("evtype"))
    if evtype is not None:
        return "earthquake" if evtype.lower() in _EMSC_QUAKES else None
    return "earthquake" if "mmi" in props and "magnitude" in props else None


def _region(value: Any) -> str | None:
    """EMSC's Flinn-Engdahl region, written in capitals ("NEW GUINEA, PAPUA NEW GUINEA"),
    as a name: capitals alone read as another language to the language identifier."""
    text = _str(value)
    return text.title() if text and text.isupper() else text


def _quake_title(mag: float | None, place: str | None) -> str | None:
    """A title in the USGS form ("M 4.6 - NEW GUINEA, PAPUA NEW GUINEA") for a feed that gives
    a magnitude and a region but no title."""
    if mag is None:
        return place
    return f"M {mag:g} - {place}" if place else f"M {mag:g}"


def _depth(geometry: Any) -> float | None:
    if isinstance(geometry, dict) and geometry.get("type") == "Point":
        coords = geometry.get("coordinates")
        if isinstance(coords, list) and len(coords) >= 3:
            return _float(coords[2])
    return None


def _points(coords: Any) -> list[tuple[float, float]]:
    """All [lon, lat, ...] positions under any geometry's coordinates."""
    if isinstance(coords, list) and len(coords) >= 2 and all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for c in coords[:2]):
        return [(float(coords[0]), float(coords[1]))]
    out: list[tuple[float, float]] = []
    if isinstance(coords, list):
        for item in coords:
            out.extend(_points(item))
    return out


def _cap_entry(feature: Mapping[str, Any], props: Mapping[str, Any]) -> FeedEntry:
    """An NWS alert: the CAP message's fields as properties."""
    event = _str(props.get("event"))
    area = _str(props.get("areaDesc"))
    status = _str(props.get("status")) or ""
    cap = CapInfo(identifier=_str(props.get("id")) or _str(feature.get("id")),
                  msg_type=_str(props.get("messageType")), event=event,
                  severity=_str(props.get("severity")), urgency=_str(props.get("urgency")),
                  certainty=_str(props.get("certainty")), area=area)
    geocode = props.get("geocode")
    pairs = [(str(name), str(v)) for name, values in geocode.items() if isinstance(values, list)
             for v in values] if isinstance(geocode, dict) else []
    location = _location(feature.get("geometry"), area[:200] if area else None)
    country = country_from_geocodes(pairs)
    if country and location:
        location = location.model_copy(update={"country": country})
    text = " ".join(t for t in (_str(props.get("description")), _str(props.get("instruction"))) if t)
    return FeedEntry(
        guid=_str(feature.get("id")) or cap.identifier,
        link=_str(props.get("@id")) or _str(feature.get("id")),
        title=_str(props.get("headline")) or " - ".join(p for p in (event, area) if p) or None,
        summary=text or None,
        published=_time(props.get("sent")) or _time(props.get("effective")),
        updated=_time(props.get("sent")),
        language=_str(props.get("language")),
        categories=[c for c in (_str(props.get("category")), event) if c],
        location=location,
        cap=cap,
        exercise=status.lower() in NOT_REAL_STATUS,
        extra={"cap_status": status} if status else {},
    )


def _gdacs_entry(feature: Mapping[str, Any], props: Mapping[str, Any]) -> FeedEntry:
    """A GDACS event: its own alert level and episode, as the GDACS RSS gives them."""
    g = {k.lower(): str(v).lower() if isinstance(v, bool) else str(v).strip()
         for k, v in props.items() if isinstance(v, str | int | float) and str(v).strip()}
    place = g.get("country")
    location = _location(feature.get("geometry"), place)
    country = gdacs_country(g)
    if location is not None:
        location = location.model_copy(update={"country": country})
    urls = props.get("url")
    report = _str(urls.get("report")) if isinstance(urls, dict) else _str(urls)
    html = _str(props.get("htmldescription"))
    return FeedEntry(
        # One incident per event, as the RSS's guid ("FL1102000"): a new episode updates it.
        guid=f"{g.get('eventtype', '')}{g['eventid']}" if g.get("eventid") else None,
        link=report,
        title=_str(props.get("name")) or _str(props.get("eventname")) or place,
        summary=html_to_text(html) if html else _str(props.get("description")),
        published=_time(props.get("fromdate")),
        updated=_time(props.get("datemodified")),
        categories=gdacs_categories(g),
        location=location,
        cap=gdacs_cap(g),
    )


def _location(geometry: Any, place: str | None) -> Location | None:
    lat = lon = None
    if isinstance(geometry, dict):
        points = _points(geometry.get("coordinates"))
        if points:
            mean_lon = sum(p[0] for p in points) / len(points)
            mean_lat = sum(p[1] for p in points) / len(points)
            if -90 <= mean_lat <= 90 and -180 <= mean_lon <= 180:
                lat, lon = round(mean_lat, 6), round(mean_lon, 6)
    country = country_from_place(place)
    if lat is None and place is None:
        return None
    return Location(country=country, place=place, lat=lat, lon=lon)
