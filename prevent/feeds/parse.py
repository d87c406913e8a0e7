"""Bytes in, entries out: the parse stage of a feed watcher. Never touches the network.

Standalone CAP goes to ``cap``, GeoJSON to ``geojson``, everything else (RSS 0.9x/2.0,
RSS 1.0/RDF, Atom, CAP-in-Atom) to feedparser on the raw bytes, after
``neutralise_dtd`` has removed every entity declaration feedparser could expand.
"""

from __future__ import annotations

import email.utils
import io
import re
import unicodedata
import xml.sax
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import defusedxml.ElementTree as SafeET
import feedparser
from defusedxml import DefusedXmlException

from prevent.contracts import CapInfo, FeedKind, Location
from prevent.feeds.text import (
    country_from_geocodes,
    country_from_place,
    html_to_text,
    iso3_to_alpha2,
    normalize_country,
)


class FeedParseError(ValueError):
    """Nothing usable in the body; names the url and, when known, line and column."""

    def __init__(self, url: str, reason: str, *, line: int | None = None,
                 column: int | None = None) -> None:
        self.url = url
        self.reason = reason
        self.line = line
        self.column = column
        where = f" at line {line}" + (f", column {column}" if column is not None else "") \
            if line is not None else ""
        super().__init__(f"{url}: {reason}{where}")


@dataclass(slots=True)
class FeedEntry:
    """One entry as the source gave it: raw title/summary (maybe HTML), parsed dates."""

    guid: str | None = None
    link: str | None = None
    title: str | None = None
    summary: str | None = None
    published: datetime | None = None  # aware (UTC) or None
    updated: datetime | None = None
    language: str | None = None  # entry's, else the feed's
    categories: list[str] = field(default_factory=list)
    location: Location | None = None
    cap: CapInfo | None = None
    exercise: bool = False  # CAP status Exercise/Test/Draft: never a real-world event
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ParsedFeed:
    entries: list[FeedEntry]
    bozo: bool = False
    bozo_reason: str | None = None  # recorded, not fatal: entries were recovered
    title: str | None = None
    link: str | None = None  # the site the feed belongs to
    language: str | None = None
    ttl_minutes: int | None = None
    hub_url: str | None = None  # WebSub hub
    self_url: str | None = None
    format: str = ""  # feedparser version ("rss20", "atom10", ...), "cap" or "geojson"


# CAP status values that are never a real-world event ("System": a network's own
# messages, such as IPAWS heartbeats).
NOT_REAL_STATUS = frozenset({"exercise", "test", "draft", "system"})


# --------------------------------------------------------------------------- dispatch


def parse_feed(body: bytes, *, url: str, headers: Mapping[str, str] | None = None,
               kind: FeedKind | None = None) -> ParsedFeed:
    """Parse one fetched body. Raises FeedParseError when nothing can be recovered."""
    # cap and geojson import FeedEntry from here, hence the imports at call time.
    from prevent.feeds import cap, geojson

    if not body or not body.strip():
        raise FeedParseError(url, "empty body")
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    if kind is FeedKind.GEOJSON or (kind is None and geojson.looks_like_json(body, hdrs)):
        return geojson.parse_geojson(body, url=url)
    if cap.looks_like_cap(body):  # kind is not GEOJSON here: that returned above
        return cap.parse_cap(body, url=url)
    return _parse_xml_feed(body, url=url, headers=hdrs)


# --------------------------------------------------------------------------- DTD guard

_DTD_MARKUP = re.compile(rb"<!(?:DOCTYPE|\s*ENTITY)", re.IGNORECASE)
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ENTITY_DECL = re.compile(rb"<!(\s*ENTITY)", re.IGNORECASE)


def _end_of_quoted(data: bytes, i: int) -> int:
    end = data.find(data[i:i + 1], i + 1)
    return -1 if end < 0 else end + 1


def _strip_internal_subset(data: bytes, start: int) -> tuple[bytes, int]:
    """Remove the ``[...]`` of the DOCTYPE at ``start``; returns (data, where to go on).

    Quote-, comment- and PI-aware, because a ``]`` or ``>`` inside a literal does not
    end the subset. The removed newlines are put back after the ``>`` so that parser
    line numbers in error messages still point at the original line.
    """
    i, n = start + 9, len(data)
    while i < n:  # the part before '[': name and external id
        c = data[i:i + 1]
        if c in (b'"', b"'"):
            i = _end_of_quoted(data, i)
            if i < 0:
                raise ValueError("unterminated literal in DOCTYPE")
            continue
        if c == b">":
            return data, i + 1  # no internal subset
        if c == b"[":
            break
        i += 1
    else:
        raise ValueError("unterminated DOCTYPE")
    open_at = i
    i += 1
    while i < n:
        if data.startswith(b"<!--", i):
            end = data.find(b"-->", i + 4)
            i = -1 if end < 0 else end + 3
        elif data.startswith(b"<?", i):
            end = data.find(b"?>", i + 2)
            i = -1 if end < 0 else end + 2
        elif data[i:i + 1] in (b'"', b"'"):
            i = _end_of_quoted(data, i)
        elif data[i:i + 1] == b"]":
            close = data.find(b">", i + 1)
            if close < 0 or data[i + 1:close].strip():
                raise ValueError("malformed end of DOCTYPE internal subset")
            newlines = data.count(b"\n", open_at, close)
            head = data[:open_at].rstrip() + b">" + b"\n" * newlines
            return head + data[close + 1:], len(head)
        else:
            i += 1
        if i < 0:
            break
    raise ValueError("unterminated DOCTYPE internal subset")


def neutralise_dtd(body: bytes) -> tuple[bytes, str | None]:
    """Make a document safe for feedparser: no entity can be declared, so none expands.

    feedparser 6 strips the DOCTYPE with regexes and keeps "safe" literal entities; that
    stops nested (billion laughs) and SYSTEM entities, but a comment holding ``<x``
    before the DOCTYPE, junk before it, or an ENTITY line outside it slips past, and a
    large literal entity referenced many times is expanded without limit by its loose
    parser (quadratic blowup). So every internal subset is cut out and every other
    ``<!ENTITY`` is escaped into text. Well-formed feeds never need either. Returns the
    new bytes and a note of what was removed (None when nothing was).
    """
    if not _DTD_MARKUP.search(body):
        return body, None
    notes: list[str] = []
    pos = 0
    while (m := _DOCTYPE.search(body, pos)) is not None:
        before = len(body)
        body, pos = _strip_internal_subset(body, m.start())
        if len(body) != before:
            notes.append("DOCTYPE internal subset removed")
    body, count = _ENTITY_DECL.subn(rb"&lt;!\1", body)
    if count:
        notes.append("ENTITY declaration outside a DOCTYPE escaped")
    return body, "; ".join(dict.fromkeys(notes)) or None


_UTF16_32 = (
    (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\xfe\xff", "utf-16"), (b"\xff\xfe", "utf-16"),
    (b"\x00<\x00", "utf-16-be"), (b"<\x00", "utf-16-le"),
)
_XML_DECL_ENCODING = re.compile(r"""^(\s*<\?xml[^>]*?encoding\s*=\s*)(["'])[^"']*\2""")
_CHARSET = re.compile(r";\s*charset\s*=\s*[^;]*", re.IGNORECASE)


def _to_ascii_compatible(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """UTF-16/32 documents become UTF-8 so the byte-level DTD guard can see their markup."""
    codec = next((c for prefix, c in _UTF16_32 if body.startswith(prefix)), None)
    if codec is None:
        return body, headers
    try:
        text = body.decode(codec)
    except UnicodeDecodeError:
        return body, headers
    text = _XML_DECL_ENCODING.sub(r"\1\2utf-8\2", text.lstrip("\ufeff"), count=1)
    headers = dict(headers)
    if "content-type" in headers:
        headers["content-type"] = _CHARSET.sub("", headers["content-type"]) + "; charset=utf-8"
    return text.encode("utf-8"), headers


# --------------------------------------------------------------------------- bare "&"

# The commonest RSS breakage is a bare "&" ("AT&T"): it drops feedparser into its loose
# parser, which writes "AT&T;". Escaping it first keeps such feeds on the strict parser.
# CDATA sections and comments are matched first and kept as they are.
_BARE_AMP = re.compile(
    rb"<!\[CDATA\[.*?\]\]>|<!--.*?-->|&(?!#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z_][\w.-]*;)",
    re.DOTALL)


def _amp(m: re.Match[bytes]) -> bytes:
    return b"&amp;" if m.group(0) == b"&" else m.group(0)


def escape_bare_ampersands(body: bytes) -> bytes:
    return _BARE_AMP.sub(_amp, body) if b"&" in body else body


# --------------------------------------------------------------------------- feedparser

# feedparser reports these when it recovered the document anyway.
_BENIGN = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)


def _describe(exc: BaseException) -> tuple[str, int | None, int | None]:
    if isinstance(exc, xml.sax.SAXParseException):
        return exc.getMessage(), exc.getLineNumber(), exc.getColumnNumber()
    return f"{type(exc).__name__}: {exc}", None, None


def _parse_xml_feed(body: bytes, *, url: str, headers: dict[str, str]) -> ParsedFeed:
    body, headers = _to_ascii_compatible(body, headers)
    try:
        body, dtd_note = neutralise_dtd(body)
    except ValueError as exc:
        raise FeedParseError(url, f"refused: {exc}") from None
    body = escape_bare_ampersands(body)
    # Without a base URI feedparser leaves relative links (and permalink guids) as they
    # are; normalize resolves links, and a guid must not change with a response header.
    headers.pop("content-location", None)
    # A file object, never the bytes: given bytes, feedparser first tries them as a
    # *file name*, so a body "/etc/passwd" would be read from disk.
    # sanitize_html / resolve_relative_uris only rewrite embedded HTML, which we reduce
    # to text anyway: skipping them saves work on HTML-heavy feeds.
    try:
        result = feedparser.parse(io.BytesIO(body), response_headers=headers,
                                  sanitize_html=False, resolve_relative_uris=False)
    except Exception as exc:  # noqa: BLE001 - feedparser's own bugs on garbage input
        # e.g. ValueError/UnicodeDecodeError from its encoding sniffing on stray NULs:
        # for the watcher that is one unreadable body, not a crash of the poll.
        raise FeedParseError(url, f"unreadable ({type(exc).__name__}: {exc})") from None
    problem = result.get("bozo_exception") if result.get("bozo") else None
    if isinstance(problem, feedparser.NonXMLContentType) and "content-type" not in headers:
        problem = None  # no header at all (a file, a test): nothing to report
    reasons = [dtd_note] if dtd_note else []
    line = column = None
    if problem is not None:
        text, line, column = _describe(problem)
        reasons.append(text + (f" (line {line}, column {column})" if line else ""))
    if not result.entries:
        if problem is not None and not isinstance(problem, _BENIGN):
            raise FeedParseError(url, f"not a readable feed: {_describe(problem)[0]}",
                                 line=line, column=column)
        if not result.get("version"):
            raise FeedParseError(url, "not a feed (no RSS, RDF, Atom, CAP or GeoJSON root)")
    feed = result.feed
    feed_lang = _language(feed.get("language")) or _language(
        (feed.get("title_detail") or {}).get("language"))
    namespaces = result.get("namespaces") or {}
    cap_prefixes = _prefixes(namespaces, "urn:oasis:names:tc:emergency:cap")
    gdacs_prefixes = _prefixes(namespaces, "http://www.gdacs.org")
    geocodes = _cap_geocodes(body, len(result.entries)) if cap_prefixes else []
    entries = [_entry(e, feed_lang, cap_prefixes, gdacs_prefixes, geocodes[i] if geocodes else [])
               for i, e in enumerate(result.entries)]
    links = feed.get("links") or []
    return ParsedFeed(
        entries=entries,
        bozo=bool(reasons),
        bozo_reason="; ".join(reasons) or None,
        title=html_to_text(feed.get("title")) or None,
        link=feed.get("link"),
        language=feed_lang,
        ttl_minutes=_ttl_minutes(feed),
        hub_url=_link_with_rel(links, "hub"),
        self_url=_link_with_rel(links, "self"),
        format=result.get("version") or "",
    )


def _prefixes(namespaces: Mapping[str, str], uri_prefix: str) -> tuple[str, ...]:
    # feedparser names unknown-namespace elements with the document's own prefix.
    return tuple(p for p, uri in namespaces.items() if p and uri.startswith(uri_prefix))


def _link_with_rel(links: Iterable[Mapping[str, Any]], rel: str) -> str | None:
    for link in links:
        if link.get("rel") == rel and link.get("href"):
            return str(link["href"])
    return None


_PERIOD_MINUTES = {"hourly": 60, "daily": 1440, "weekly": 10080, "monthly": 43200,
                   "yearly": 525600}


def _ttl_minutes(feed: Mapping[str, Any]) -> int | None:
    """RSS <ttl>, else sy:updatePeriod / sy:updateFrequency, in minutes."""
    ttl = _int(feed.get("ttl"))
    if ttl is not None and ttl > 0:
        return ttl
    period = _PERIOD_MINUTES.get(str(feed.get("sy_updateperiod", "")).strip().lower())
    if period is None:
        return None
    frequency = _int(feed.get("sy_updatefrequency")) or 1
    return max(1, -(-period // max(1, frequency)))  # ceil: never poll more often than asked


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def language_tag(value: Any) -> str | None:
    """A BCP 47 tag as feeds declare it ("en_us" -> "en-US"), else None."""
    return _language(value)


def _language(value: Any) -> str | None:
    if not value or not isinstance(value, str):
        return None
    value = value.strip().replace("_", "-")
    if not value or not re.fullmatch(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*", value):
        return None
    primary, *rest = value.split("-")
    return "-".join([primary.lower(), *[r.upper() if len(r) == 2 else r for r in rest]])


# --------------------------------------------------------------------------- entries


def _entry(e: Mapping[str, Any], feed_lang: str | None, cap_prefixes: tuple[str, ...],
           gdacs_prefixes: tuple[str, ...], geocodes: list[tuple[str, str]]) -> FeedEntry:
    cap_info, status = _cap_fields(e, cap_prefixes)
    gdacs = _ns_fields(e, gdacs_prefixes)
    location = _location(e, gdacs)
    if cap_info is not None:
        location = _with_cap_area(location, _ns_fields(e, cap_prefixes), geocodes)
    if cap_info is None and gdacs:
        cap_info = gdacs_cap(gdacs)
    summary = e.get("summary")
    if not summary and e.get("content"):
        summary = e["content"][0].get("value")
    lang = (_language(e.get("language")) or _language(e.get("iso_language"))
            or _language((e.get("title_detail") or {}).get("language")) or feed_lang)
    extra = {}
    if status:
        extra["cap_status"] = status
    return FeedEntry(
        guid=(e.get("id") or "").strip() or None,
        link=e.get("link"),
        title=e.get("title"),
        summary=summary,
        published=_date(e, "published") or _cap_date(e, cap_prefixes),
        updated=_date(e, "updated"),
        language=lang,
        categories=_categories(e) + gdacs_categories(gdacs),
        location=location,
        cap=cap_info,
        exercise=status.lower() in NOT_REAL_STATUS,
        extra=extra,
    )


def _categories(e: Mapping[str, Any]) -> list[str]:
    terms = (str(t.get("term") or "").strip() for t in e.get("tags") or ())
    return list(dict.fromkeys(t for t in terms if t))


def _ns_fields(e: Mapping[str, Any], prefixes: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for prefix in prefixes:
        head = prefix + "_"
        for key, value in e.items():
            if key.startswith(head) and isinstance(value, str) and value.strip():
                out.setdefault(key[len(head):], value.strip())
    return out


def _cap_fields(e: Mapping[str, Any], prefixes: tuple[str, ...]) -> tuple[CapInfo | None, str]:
    """CapInfo from the cap: elements NWS and others put into Atom/RSS entries."""
    if not prefixes:
        return None, ""
    f = _ns_fields(e, prefixes)
    if not any(k in f for k in ("severity", "urgency", "certainty", "event")):
        return None, f.get("status", "")
    # MeteoAlarm's Atom feeds name it cap:message_type.
    info = CapInfo(identifier=f.get("identifier"), msg_type=f.get("msgtype") or f.get("message_type"),
                   event=f.get("event"), severity=f.get("severity"), urgency=f.get("urgency"),
                   certainty=f.get("certainty"), area=f.get("areadesc"))
    return info, f.get("status", "")


def cap_points(text: str) -> list[tuple[float, float]]:
    """The "lat,lon" pairs of a CAP polygon or circle centre."""
    out = []
    for token in text.split():
        lat, _, lon = token.partition(",")
        try:
            out.append((float(lat), float(lon)))
        except ValueError:
            continue
    return out


def _with_cap_area(location: Location | None, f: Mapping[str, str],
                   geocodes: list[tuple[str, str]]) -> Location | None:
    """``location`` completed with the entry's CAP area (NWS CAP-in-Atom): the country its
    geocodes or its areaDesc name (they win over the text, where "Birmingham" is in
    England), the mean of its polygon or the centre of its circle."""
    area = f.get("areadesc")
    points = cap_points(f.get("polygon", "")) or cap_points(f.get("circle", "").split(" ")[0])
    lat = lon = None
    if points:
        lat = round(sum(p[0] for p in points) / len(points), 6)
        lon = round(sum(p[1] for p in points) / len(points), 6)
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            lat = lon = None
    country = country_from_geocodes(geocodes) or country_from_place(area)
    if location is None:
        if lat is None and country is None and area is None:
            return None
        return Location(country=country, place=area[:200] if area else None, lat=lat, lon=lon)
    return Location(country=country or location.country,
                    place=location.place or (area[:200] if area else None),
                    lat=location.lat if location.lat is not None else lat,
                    lon=location.lon if location.lon is not None else lon)


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _cap_geocodes(body: bytes, count: int) -> list[list[tuple[str, str]]]:
    """Each entry's CAP ``<geocode>`` (valueName, value) pairs, in document order.

    feedparser keeps only the last ``<value>`` of an entry, and NWS puts every zone of an
    alert in one ``<cap:geocode>``. [] when the document is not well-formed or its entries
    do not line up with feedparser's (then the areaDesc alone places them)."""
    try:
        root = SafeET.fromstring(body)
    except (SafeET.ParseError, DefusedXmlException, ValueError):
        return []
    items = [el for el in root.iter() if _local(el.tag) in ("entry", "item")]
    if len(items) != count:
        return []
    out: list[list[tuple[str, str]]] = []
    for item in items:
        pairs: list[tuple[str, str]] = []
        for geocode in item.iter():
            if _local(geocode.tag) != "geocode" or "emergency:cap" not in str(geocode.tag):
                continue
            name = ""
            for child in geocode:
                text = (child.text or "").strip()
                if _local(child.tag) == "valueName":
                    name = text
                elif _local(child.tag) == "value" and name and text:
                    pairs.append((name, text))
        out.append(pairs)
    return out


def _cap_date(e: Mapping[str, Any], prefixes: tuple[str, ...]) -> datetime | None:
    for prefix in prefixes:
        for name in ("sent", "effective", "onset"):
            if parsed := parse_datetime(e.get(f"{prefix}_{name}")):
                return parsed
    return None


# GDACS alert levels carry the same meaning as PAGER colours (see geojson.PAGER_SEVERITY).
_GDACS_SEVERITY = {"red": "Extreme", "orange": "Severe", "yellow": "Moderate", "green": "Minor"}
_GDACS_EVENTS = {"EQ": "Earthquake", "TC": "Tropical cyclone", "FL": "Flood", "VO": "Volcano",
                 "DR": "Drought", "WF": "Wildfire", "TS": "Tsunami"}


_GDACS_ASSESSMENT = ("eventtype", "alertlevel", "episodealertlevel", "iscurrent")


def gdacs_categories(g: Mapping[str, str]) -> list[str]:
    """GDACS's own assessment, as ``gdacs:<field>:<value>`` categories that
    ``prevent.classification.sources`` reads (alert level, episode level, current or not)."""
    if not g.get("alertlevel"):
        return []
    return [f"gdacs:{k}:{g[k].strip()}" for k in _GDACS_ASSESSMENT if g.get(k, "").strip()]


def gdacs_cap(g: Mapping[str, str]) -> CapInfo | None:
    level = g.get("alertlevel", "").lower()
    if not level:
        return None
    event_type = g.get("eventtype", "").upper()
    return CapInfo(
        identifier=f"{event_type}{g['eventid']}" if g.get("eventid") else None,
        msg_type="Alert",
        event=_GDACS_EVENTS.get(event_type, event_type or None),
        severity=_GDACS_SEVERITY.get(level, "Unknown"),
        area=g.get("country"),
    )


def gdacs_country(g: Mapping[str, str]) -> str | None:
    """The country of a GDACS event: its ``iso3`` (the first known of a list), else its
    ``country`` when that names one country."""
    for code in re.split(r"[\s,;]+", g.get("iso3", "")):
        if country := iso3_to_alpha2(code):
            return country
    return normalize_country(g["country"]) if g.get("country") else None


def _location(e: Mapping[str, Any], gdacs: Mapping[str, str]) -> Location | None:
    lat, lon = _coordinates(e)
    country = gdacs_country(gdacs)
    place = gdacs.get("country")
    if lat is None and country is None and place is None:
        return None
    return Location(country=country, place=place, lat=lat, lon=lon)


def _coordinates(e: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """GeoRSS (any geometry: its mean point) or W3C geo; None when out of range."""
    where = e.get("where") or {}
    coords = where.get("coordinates")
    pairs: list[tuple[float, float]] = []
    if where.get("type") == "Point" and coords:
        pairs = [(coords[1], coords[0])]
    elif coords:
        pairs = [(p[1], p[0]) for p in _flatten_pairs(coords)]
    if not pairs and e.get("geo_lat") and e.get("geo_long"):
        pairs = [(e["geo_lat"], e["geo_long"])]
    try:
        points = [(float(a), float(b)) for a, b in pairs]
    except (TypeError, ValueError):
        return None, None
    if not points:
        return None, None
    lat = sum(p[0] for p in points) / len(points)
    lon = sum(p[1] for p in points) / len(points)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None, None
    return round(lat, 6), round(lon, 6)


def _flatten_pairs(value: Any) -> list[tuple[Any, Any]]:
    if isinstance(value, (list, tuple)) and len(value) == 2 and \
            all(isinstance(v, (int, float)) for v in value):
        return [(value[0], value[1])]
    out: list[tuple[Any, Any]] = []
    if isinstance(value, (list, tuple)):
        for item in value:
            out.extend(_flatten_pairs(item))
    return out


# --------------------------------------------------------------------------- dates


def _date(e: Mapping[str, Any], name: str) -> datetime | None:
    # ``*_parsed`` is feedparser's public result of every date format it registers (RFC 822
    # and its variants, W3DTF/ISO 8601, asctime, Greek, Hungarian, Korean, Perforce, MSSQL),
    # so ``parse_datetime`` only has to add what feedparser does not know.
    parsed = _own(e, f"{name}_parsed")
    if parsed:
        try:
            return datetime(*parsed[:6]).replace(tzinfo=UTC)  # feedparser gives UTC struct_time
        except (TypeError, ValueError):
            pass
    return parse_datetime(_own(e, name))


def _own(e: Mapping[str, Any], key: str) -> Any:
    """The entry's own ``key``, else None. Not ``get``: feedparser answers a missing
    ``updated``/``updated_parsed`` with ``published``'s value and a DeprecationWarning (its
    issue 310, a fallback it will remove); its ``in`` has no fallback. ``normalize`` falls back
    to the published date itself."""
    return e[key] if key in e else None  # noqa: SIM401 - get() is the deprecated fallback


# Month names feedparser does not know, by their accent-free first letters
# (pt, es, fr, de, it); English is feedparser's job.
_MONTHS = {
    "jan": 1, "ene": 1, "gen": 1, "janv": 1, "fev": 2, "feb": 2, "fevr": 2, "mar": 3,
    "mars": 3, "mrz": 3, "abr": 4, "apr": 4, "avr": 4, "mai": 5, "may": 5, "mag": 5,
    "jun": 6, "juin": 6, "giu": 6, "jul": 7, "juil": 7, "lug": 7, "ago": 8, "aug": 8,
    "aout": 8, "set": 9, "sep": 9, "sept": 9, "out": 10, "oct": 10, "okt": 10, "ott": 10,
    "nov": 11, "dez": 12, "dic": 12, "dec": 12,
}
_LOOSE_DATE = re.compile(
    r"(\d{1,2})\.?\s+([^\W\d_]+)\.?\s+(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?"
    r"\s*(Z|GMT|UTC|[+-]\d{2}:?\d{2})?", re.IGNORECASE)


# "GMT-01:01", "+02:00": an offset with a colon, which ``email.utils`` would not read (and
# would then take the time as UTC).
_COLON_OFFSET = re.compile(r"\s(?:GMT|UTC)?([+-]\d{2}):(\d{2})$", re.IGNORECASE)


def parse_datetime(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO 8601, RFC 822 (``email.utils``), or an RFC 822 date in
    another language. A date without a zone is taken as UTC, as feedparser does."""
    if not value or not isinstance(value, str):
        return None
    value = value.strip()
    try:
        return _utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, OverflowError):
        pass
    try:
        return _utc(email.utils.parsedate_to_datetime(_COLON_OFFSET.sub(r" \1\2", value)))
    except (TypeError, ValueError, IndexError, OverflowError):
        pass
    return _parse_localised(value)


def _utc(dt: datetime) -> datetime:
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)


def _parse_localised(value: str) -> datetime | None:
    m = _LOOSE_DATE.search(value)
    if not m:
        return None
    day, month_name, year, hh, mm, ss, zone = m.groups()
    ascii_name = unicodedata.normalize("NFKD", month_name).encode("ascii", "ignore").decode()
    key = ascii_name.lower()
    month = _MONTHS.get(key[:4]) or _MONTHS.get(key[:3])
    if month is None:
        return None
    tz = UTC
    if zone and zone[0] in "+-":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        tz = timezone(offset if zone[0] == "+" else -offset)
    try:
        dt = datetime(int(year), month, int(day), int(hh or 0), int(mm or 0), int(ss or 0),
                      tzinfo=tz)
    except ValueError:
        return None
    return dt.astimezone(UTC)
