"""Standalone CAP 1.x ``<alert>`` documents (OASIS Common Alerting Protocol).

Parsed with defusedxml and DTDs forbidden: a CAP message never needs one. One alert gives
one entry; when it carries several ``<info>`` blocks (bilingual CAP-CP), the one in the
preferred language is used so one alert does not become two incidents.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from prevent.contracts import CapInfo, Location
from prevent.feeds.parse import (
    NOT_REAL_STATUS,
    FeedEntry,
    FeedParseError,
    ParsedFeed,
    cap_points,
    parse_datetime,
)
from prevent.feeds.text import country_from_geocodes, country_from_place

CAP_NAMESPACE = "urn:oasis:names:tc:emergency:cap:"

_COMMENT = re.compile(rb"<!--.*?-->", re.DOTALL)
_FIRST_ELEMENT = re.compile(rb"<([A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)[\s/>]")


def looks_like_cap(body: bytes) -> bool:
    """Is the root element a CAP ``<alert>``? Only the head of the body is looked at."""
    head = _COMMENT.sub(b"", body[:4096])
    m = _FIRST_ELEMENT.search(head)
    return bool(m and m.group(2) == b"alert" and CAP_NAMESPACE.encode() in head)


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(el: Element, name: str) -> list[Element]:
    # Any CAP version's namespace (1.0, 1.1, 1.2): match on the local name.
    return [c for c in el if _local(c.tag) == name]


def _text(el: Element, name: str) -> str | None:
    for child in _children(el, name):
        if child.text and child.text.strip():
            return child.text.strip()
    return None


def parse_cap(body: bytes, *, url: str,
              preferred_languages: Sequence[str] = ("en",)) -> ParsedFeed:
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise FeedParseError(url, f"refused CAP document: {exc}") from None
    except ParseError as exc:
        line, column = getattr(exc, "position", (None, None))
        # ElementTree ends its message with the position FeedParseError adds itself.
        reason = re.sub(r": line \d+, column \d+$", "", str(exc))
        raise FeedParseError(url, f"malformed CAP: {reason}", line=line, column=column) from None
    if _local(root.tag) != "alert":
        raise FeedParseError(url, f"not a CAP alert (root <{_local(root.tag)}>)")
    entry = _alert_entry(root, preferred_languages)
    return ParsedFeed(entries=[entry], title=_text(root, "source") or _text(root, "sender"),
                      language=entry.language, format="cap")


def _pick_info(infos: list[Element], preferred: Sequence[str]) -> Element | None:
    for want in preferred:
        for info in infos:
            # CAP: a missing <language> means en-US.
            lang = (_text(info, "language") or "en-US").lower()
            if lang == want.lower() or lang.startswith(want.lower() + "-"):
                return info
    return infos[0] if infos else None


def _original_identifier(root: Element, identifier: str | None) -> str | None:
    """The first message of the thread this one updates, from <references>.

    CAP updates and cancels get new identifiers but list the messages they supersede
    ("sender,identifier,sent" triples); keying on the earliest one keeps every update of
    an alert on one incident id, so an update shows as changed content, not a new event.
    """
    refs = (_text(root, "references") or "").split()
    triples = [r.split(",") for r in refs if r.count(",") == 2]
    if not triples:
        return identifier
    dated = [(parse_datetime(t[2]), t[1]) for t in triples]
    known = [d for d in dated if d[0] is not None]
    return min(known)[1] if known else triples[0][1]


def _alert_entry(root: Element, preferred: Sequence[str]) -> FeedEntry:
    identifier = _text(root, "identifier")
    sender = _text(root, "sender") or ""
    status = _text(root, "status") or ""
    msg_type = _text(root, "msgType")
    infos = _children(root, "info")
    info = _pick_info(infos, preferred)
    sent = parse_datetime(_text(root, "sent"))
    original = _original_identifier(root, identifier)
    guid = f"{sender},{original}" if original else None
    extra = {"cap_status": status, "cap_sender": sender}
    if info is None:  # a bare Cancel/Ack may have no info at all
        return FeedEntry(guid=guid, title=f"CAP {msg_type or 'message'} from {sender}",
                         summary=_text(root, "note"), published=sent, updated=sent,
                         cap=CapInfo(identifier=identifier, msg_type=msg_type),
                         exercise=status.lower() in NOT_REAL_STATUS, extra=extra)
    event = _text(info, "event")
    areas = _children(info, "area")
    area_descs = [d for a in areas if (d := _text(a, "areaDesc"))]
    cap = CapInfo(identifier=identifier, msg_type=msg_type, event=event,
                  severity=_text(info, "severity"), urgency=_text(info, "urgency"),
                  certainty=_text(info, "certainty"), area="; ".join(area_descs) or None)
    description = _text(info, "description")
    instruction = _text(info, "instruction")
    headline = _text(info, "headline")
    title = headline or " - ".join(p for p in (event, area_descs[0] if area_descs else None) if p)
    categories = [c.text.strip() for c in _children(info, "category") if c.text and c.text.strip()]
    if event:
        categories.append(event)
    others = sorted({(_text(i, "language") or "en-US") for i in infos if i is not info})
    if others:
        extra["other_languages"] = ",".join(others)
    return FeedEntry(
        guid=guid,
        link=_text(info, "web"),
        title=title or None,
        summary=" ".join(p for p in (description, instruction) if p) or None,
        published=sent or parse_datetime(_text(info, "effective")),
        updated=sent,
        language=_text(info, "language") or "en-US",
        categories=list(dict.fromkeys(categories)),
        location=_location(info, areas, area_descs),
        cap=cap,
        exercise=status.lower() in NOT_REAL_STATUS,
        extra=extra,
    )


def _location(info: Element, areas: list[Element], descs: list[str]) -> Location | None:
    lat, lon = _area_point(areas)
    if lat is None:
        lat, lon = _event_latlon(info)
    geocodes = [(_text(g, "valueName") or "", _text(g, "value") or "")
                for a in areas for g in _children(a, "geocode")]
    country = country_from_geocodes(geocodes) or (country_from_place(" ; ".join(descs)) if descs else None)
    place = descs[0][:200] if descs else None
    if lat is None and country is None and place is None:
        return None
    return Location(country=country, place=place, lat=lat, lon=lon)


def _area_point(areas: list[Element]) -> tuple[float | None, float | None]:
    """Centre of the first circle, else the mean vertex of the first polygon."""
    for area in areas:
        for circle in _children(area, "circle"):
            # "lat,lon radius"
            points = cap_points((circle.text or "").split(" ")[0])
            if points:
                return _valid(*points[0])
        for polygon in _children(area, "polygon"):
            points = cap_points(polygon.text or "")
            if points:
                return _valid(sum(p[0] for p in points) / len(points),
                              sum(p[1] for p in points) / len(points))
    return None, None


def _event_latlon(info: Element) -> tuple[float | None, float | None]:
    # NWS tsunami messages give the epicentre as parameter EventLatLon "51.800,-171.400 0.000".
    for param in _children(info, "parameter"):
        if _text(param, "valueName") == "EventLatLon":
            points = cap_points((_text(param, "value") or "").split(" ")[0])
            if points:
                return _valid(*points[0])
    return None, None


def _valid(lat: float, lon: float) -> tuple[float | None, float | None]:
    if -90 <= lat <= 90 and -180 <= lon <= 180:
        return round(lat, 6), round(lon, 6)
    return None, None
