"""Text helpers shared by the feed stages: HTML to plain text, URL canonicalisation, countries.

Everything here is pure and cheap: it runs once per entry for thousands of feeds a round.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from html import unescape
from html.parser import HTMLParser
from urllib.parse import quote, unquote_plus, urljoin, urlsplit, urlunsplit

import pycountry

ELLIPSIS = "\u2026"

# --------------------------------------------------------------------------- html -> text

# Content of these elements is never text a reader would see (or is active content).
_DROP_CONTENT = frozenset({"script", "style", "noscript", "template", "iframe", "object",
                           "svg", "math", "head", "title", "select", "textarea"})
# Elements that separate words visually; without a space "<p>a</p><p>b</p>" reads "ab".
_BLOCK = frozenset({"p", "br", "div", "li", "ul", "ol", "dd", "dt", "dl", "tr", "td", "th",
                    "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr",
                    "section", "article", "header", "footer", "figure", "figcaption", "img"})
_WS = re.compile(r"\s+")
# A "<" that would open a tag, a comment, a declaration or a PI when rendered as HTML.
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0  # depth inside elements whose content is dropped

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_CONTENT:
            self._skip += 1
        elif tag in _BLOCK:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:  # <br/>, <img/>: a separator, never a drop-content opener
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_CONTENT:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


_DROP_BLOCK = re.compile(r"<(script|style)\b.*?(?:</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
_ANY_TAG = re.compile(r"<[^>]*>?")


def _strip_crudely(text: str) -> str:
    return unescape(_ANY_TAG.sub(" ", _DROP_BLOCK.sub(" ", text)))


def _strip_once(text: str) -> str:
    parser = _TextExtractor()
    try:
        parser.feed(text)
        parser.close()
    except AssertionError:
        # html.parser (3.11) asserts on some broken declarations ("<![x"); a regex pass
        # is cruder but never fails, and the caller's guard still removes tag openers.
        return _strip_crudely(text)
    return "".join(parser.parts)


def html_to_text(html: str | None) -> str:
    """Plain text of an HTML fragment: tags removed, script/style content dropped,
    entities decoded, whitespace collapsed. The result never contains a tag opener."""
    if not html:
        return ""
    text = html
    if "<" in text or "&" in text:
        # Feeds often escape twice ("&amp;lt;b&amp;gt;"); a few passes peel that off,
        # bounded so a hostile input cannot make us loop.
        for _ in range(3):
            stripped = _strip_once(text)
            if stripped == text or (not _TAG_OPEN.search(stripped) and "&" not in stripped):
                text = stripped
                break
            text = stripped
        # Whatever is left that could still open a tag is plain text: break it up so no
        # renderer that forgets to escape can ever see markup from a feed.
        text = _TAG_OPEN.sub("< ", text)
    return _WS.sub(" ", text).strip()


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary and marked with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:  # a word boundary not too far back; else cut mid-word
        cut = cut[:space]
    return cut.rstrip(" ,;:-\u2013\u2014") + ELLIPSIS


def first_words(text: str, limit: int = 120) -> str:
    return truncate(text, limit)


# --------------------------------------------------------------------------- URLs

# Query parameters that identify a campaign or a click, never the document.
TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "gclsrc", "dclid", "msclkid", "yclid", "twclid", "ttclid", "li_fat_id",
    "mc_cid", "mc_eid", "igshid", "igsh", "ref", "ref_src", "ref_url", "referrer", "cmpid",
    "_hsenc", "_hsmi", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id", "wt.mc_id",
    "ncid", "ocid", "sr_share", "rss", "rssfeed", "at_medium", "at_campaign",
})
_TRACKING_PREFIXES = ("utm_", "pk_", "piwik_", "mtm_", "__twitter_impression")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SPACE = re.compile(r"\s")
_BAD_HOST = re.compile(r"[\s<>\"{}|\\^`]")


def _encode_spaces(part: str) -> str:
    # A raw space would be trimmed by the next reader of the URL; %20 survives.
    return _SPACE.sub(lambda m: quote(m.group(0)), part)


def is_tracking_param(name: str) -> bool:
    key = unquote_plus(name).strip().lower()
    return key in TRACKING_PARAMS or key.startswith(_TRACKING_PREFIXES)


def _clean_query(query: str) -> str:
    # Filter the raw segments rather than decode and re-encode them: the kept part is
    # byte-for-byte what the publisher wrote, which keeps the function idempotent.
    kept = [seg for seg in query.split("&") if seg and not is_tracking_param(seg.split("=", 1)[0])]
    return "&".join(kept)


def canonical_url(url: str | None, base: str | None = None) -> str | None:
    """The canonical form of an http(s) link, or None when it is not one.

    Relative links resolve against ``base``; scheme and host are lower-cased, default
    ports, credentials, fragments and tracking parameters are dropped.
    """
    if not url:
        return None
    url = url.strip()
    try:
        if base:
            url = urljoin(base, url)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            return None
        host = parts.hostname  # lower-cased, credentials stripped
        port = parts.port  # raises ValueError when it is not a number in range
    except ValueError:
        return None
    if not host or _BAD_HOST.search(host):
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _encode_spaces(parts.path) or "/"
    query = _encode_spaces(_clean_query(parts.query))
    return urlunsplit((scheme, netloc, path, query, ""))


# --------------------------------------------------------------------------- countries

# ISO 3166-1 (alpha-3, alpha-2, short and common English names) come from pycountry;
# the news' own names for countries are added below.

# Names in the news that are not the ISO short names.
_ALIASES = {
    "russia": "RU", "turkey": "TR", "czech republic": "CZ", "iran": "IR", "syria": "SY",
    "laos": "LA", "moldova": "MD", "tanzania": "TZ", "venezuela": "VE", "bolivia": "BO",
    "palestine": "PS", "gaza": "PS", "west bank": "PS", "vatican": "VA", "ivory coast": "CI",
    "uk": "GB", "britain": "GB", "great britain": "GB", "england": "GB", "scotland": "GB",
    "wales": "GB", "northern ireland": "GB", "usa": "US", "u.s.": "US", "united states": "US",
    "burma": "MM", "macedonia": "MK", "swaziland": "SZ", "cape verde": "CV",
    "east timor": "TL", "brunei": "BN", "micronesia": "FM", "south korea": "KR",
    "north korea": "KP", "dr congo": "CD", "drc": "CD", "democratic republic of the congo": "CD",
    "republic of the congo": "CG", "congo": "CG", "kosovo": "XK", "taiwan": "TW",
    "vietnam": "VN", "fiji islands": "FJ", "solomon islands": "SB", "the netherlands": "NL",
    "holland": "NL", "puerto rico": "PR", "hong kong": "HK", "macau": "MO",
}
# USGS and NWS places end in a US state ("10km NE of Aguanga, CA").
_US_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "FL": "Florida", "GA": "Georgia",
    "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois", "IN": "Indiana", "IA": "Iowa",
    "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland",
    "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi",
    "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma",
    "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina",
    "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont",
    "VA": "Virginia", "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin",
    "WY": "Wyoming",
}


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[str, str], dict[str, str], frozenset[str], re.Pattern[str]]:
    alpha3: dict[str, str] = {}
    names: dict[str, str] = {}
    for country in sorted(pycountry.countries, key=lambda c: c.alpha_3):
        alpha3[country.alpha_3] = country.alpha_2
        for name in (country.name, getattr(country, "common_name", None)):
            if name:
                names[name.lower()] = country.alpha_2
    names.update(_ALIASES)
    for state in _US_STATES.values():  # "Georgia" stays the country
        names.setdefault(state.lower(), "US")
    alpha2 = frozenset(alpha3.values()) | {"XK"}
    # Longest names first so "South Sudan" wins over "Sudan", "Papua New Guinea" over "Guinea".
    searchable = sorted((n for n in names if "," not in n and len(n) > 3), key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in searchable) + r")\b")
    return alpha3, names, alpha2, pattern


def iso3_to_alpha2(code: str | None) -> str | None:
    if not code:
        return None
    return _tables()[0].get(code.strip().upper())


def normalize_country(value: str | None) -> str | None:
    """An ISO alpha-2 code from an alpha-2, alpha-3 or English country name, else None."""
    if not value:
        return None
    value = value.strip()
    alpha3, names, alpha2, _ = _tables()
    upper = value.upper()
    if len(upper) == 2 and upper in alpha2:
        return upper
    if len(upper) == 3 and upper in alpha3:
        return alpha3[upper]
    return names.get(value.lower())


def country_from_place(place: str | None) -> str | None:
    """The country a free-text place is in ("35 km NNW of Herat, Afghanistan" -> AF).

    The last comma-separated part decides when it names a country or a US state; else
    a single country name anywhere in the text; ambiguous places ("Poland-Slovakia
    border region") give None rather than a guess.
    """
    if not place:
        return None
    tail = place.rsplit(",", 1)[-1].strip()
    if tail.upper() in _US_STATES and tail.isupper():
        return "US"
    found = normalize_country(tail) if len(tail) > 3 else None
    if found:
        return found
    hits = {_tables()[1][m.group(1)] for m in _tables()[3].finditer(place.lower())}
    return hits.pop() if len(hits) == 1 else None


# CAP geocodes whose codes say the country. NWS: UGC zones ("ALC129", "GMZ554": state or
# marine area, C or Z, three digits) and FIPS6 counties (state number first); Canada's
# CAP-CP location codes; MeteoAlarm's EMMA_ID and NUTS codes start with the country.
_UGC = re.compile(r"([A-Z]{2})[CZ]\d{3}")
_US_TERRITORIES = {"PR": "PR", "GU": "GU", "VI": "VI", "AS": "AS", "MP": "MP"}
_FIPS_TERRITORIES = {"72": "PR", "66": "GU", "78": "VI", "60": "AS", "69": "MP"}
_EU_CODES = {"EL": "GR", "UK": "GB"}  # Eurostat's own codes for Greece and the UK


def country_from_geocode(name: str | None, value: str | None) -> str | None:
    """The country a CAP ``<geocode>`` (valueName, value) places an alert in, else None."""
    name = (name or "").strip().upper()
    value = (value or "").strip().upper()
    if not value:
        return None
    if name == "UGC" and (m := _UGC.fullmatch(value)):
        return _US_TERRITORIES.get(m.group(1), "US")
    if name == "FIPS6" and value.isdigit() and len(value) == 6:
        return _FIPS_TERRITORIES.get(value[1:3], "US")
    if name.startswith("PROFILE:CAP-CP:LOCATION"):
        return "CA"
    if name.startswith(("EMMA_ID", "NUTS")) and value[:2].isalpha():
        code = _EU_CODES.get(value[:2], value[:2])
        return code if code in _tables()[2] else None
    return None


def country_from_geocodes(pairs: Iterable[tuple[str, str]]) -> str | None:
    """The one country all of an alert's geocodes that name one agree on, else None. A value
    may hold several codes apart by spaces (NWS CAP-in-Atom: "009001 009007")."""
    found = {c for name, values in pairs for value in values.split()
             if (c := country_from_geocode(name, value))}
    return found.pop() if len(found) == 1 else None
