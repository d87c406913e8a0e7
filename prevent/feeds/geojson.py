"""GeoJSON FeatureCollections, shaped like the USGS earthquake summary feeds.

USGS properties: title, place, time/updated (epoch ms), url, mag, alert (PAGER colour),
tsunami, status, type; geometry is a Point [lon, lat, depth km]. Other GeoJSON feeds
work when they use title/name, description and url/link.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from prevent.contracts import CapInfo, Location
from prevent.feeds.parse import FeedEntry, FeedParseError, ParsedFeed, parse_datetime
from prevent.feeds.text import country_from_place

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
    if isinstance(data, dict) and data.get("type") == "Feature":
        data = {"type": "FeatureCollection", "features": [data]}
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" \
            or not isinstance(data.get("features"), list):
        raise FeedParseError(url, "not a GeoJSON FeatureCollection")
    metadata = data.get("metadata")
    meta: dict[str, Any] = metadata if isinstance(metadata, dict) else {}
    entries = [e for f in data["features"] if isinstance(f, dict) if (e := _entry(f))]
    skipped = len(data["features"]) - len(entries)
    return ParsedFeed(
        entries=entries,
        bozo=bool(skipped),
        bozo_reason=f"{skipped} feature(s) skipped (not objects or deleted)" if skipped else None,
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
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


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
    place = _str(props.get("place"))
    mag = _float(props.get("mag"))
    alert = (_str(props.get("alert")) or "").lower() or None
    event_type = _str(props.get("type"))
    cap = None
    if alert or mag is not None:
        cap = CapInfo(identifier=_str(feature.get("id")) or _str(props.get("code")),
                      msg_type="Alert", event=(event_type or "event").capitalize(),
                      severity=PAGER_SEVERITY.get(alert or "", "Unknown"),
                      urgency="Past", certainty="Observed", area=place)
    sig = props.get("sig")
    sig_tag = f"usgs:sig:{int(sig)}" if isinstance(sig, int | float) and mag is not None else None
    tsunami = "usgs:tsunami:1" if props.get("tsunami") in (1, "1", True) else None
    categories = [c for c in (event_type, f"pager:{alert}" if alert else None, sig_tag, tsunami) if c]
    return FeedEntry(
        guid=_str(feature.get("id")) or _str(props.get("ids")),
        link=_str(props.get("url")) or _str(props.get("link")),
        title=_str(props.get("title")) or _str(props.get("name")) or place,
        summary=_summary(props, place, mag, alert, event_type, feature.get("geometry")),
        published=_time(props.get("time")) or _time(props.get("published")),
        updated=_time(props.get("updated")),
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
    depth = _depth(geometry)
    if depth is not None and mag is not None:
        parts.append(f"Depth {depth:g} km.")
    if props.get("tsunami") in (1, "1", True):
        parts.append("Tsunami flag set: check the regional tsunami warning centre.")
    return " ".join(parts) or None


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
