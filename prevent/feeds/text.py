"""Text helpers shared by the feed stages: HTML to plain text, URL canonicalisation, countries.

Everything here is pure and cheap: it runs once per entry for thousands of feeds a round.
"""

from __future__ import annotations

import re
from functools import lru_cache
from html import unescape
from html.parser import HTMLParser
from urllib.parse import quote, unquote_plus, urljoin, urlsplit, urlunsplit

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
            if stripped == text or not _TAG_OPEN.search(stripped) and "&" not in stripped:
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

# ISO 3166-1 (alpha-3, alpha-2, names) generated from the pycountry data; small enough
# to carry here rather than pulling the package (and its translations) in.
_ISO3166 = """\
ABW AW Aruba
AFG AF Afghanistan
AGO AO Angola
AIA AI Anguilla
ALA AX Åland Islands
ALB AL Albania
AND AD Andorra
ARE AE United Arab Emirates
ARG AR Argentina
ARM AM Armenia
ASM AS American Samoa
ATA AQ Antarctica
ATF TF French Southern Territories
ATG AG Antigua and Barbuda
AUS AU Australia
AUT AT Austria
AZE AZ Azerbaijan
BDI BI Burundi
BEL BE Belgium
BEN BJ Benin
BES BQ Bonaire, Sint Eustatius and Saba
BFA BF Burkina Faso
BGD BD Bangladesh
BGR BG Bulgaria
BHR BH Bahrain
BHS BS Bahamas
BIH BA Bosnia and Herzegovina
BLM BL Saint Barthélemy
BLR BY Belarus
BLZ BZ Belize
BMU BM Bermuda
BOL BO Bolivia, Plurinational State of|Bolivia
BRA BR Brazil
BRB BB Barbados
BRN BN Brunei Darussalam
BTN BT Bhutan
BVT BV Bouvet Island
BWA BW Botswana
CAF CF Central African Republic
CAN CA Canada
CCK CC Cocos (Keeling) Islands
CHE CH Switzerland
CHL CL Chile
CHN CN China
CIV CI Côte d'Ivoire
CMR CM Cameroon
COD CD Congo, The Democratic Republic of the
COG CG Congo
COK CK Cook Islands
COL CO Colombia
COM KM Comoros
CPV CV Cabo Verde
CRI CR Costa Rica
CUB CU Cuba
CUW CW Curaçao
CXR CX Christmas Island
CYM KY Cayman Islands
CYP CY Cyprus
CZE CZ Czechia
DEU DE Germany
DJI DJ Djibouti
DMA DM Dominica
DNK DK Denmark
DOM DO Dominican Republic
DZA DZ Algeria
ECU EC Ecuador
EGY EG Egypt
ERI ER Eritrea
ESH EH Western Sahara
ESP ES Spain
EST EE Estonia
ETH ET Ethiopia
FIN FI Finland
FJI FJ Fiji
FLK FK Falkland Islands (Malvinas)
FRA FR France
FRO FO Faroe Islands
FSM FM Micronesia, Federated States of
GAB GA Gabon
GBR GB United Kingdom
GEO GE Georgia
GGY GG Guernsey
GHA GH Ghana
GIB GI Gibraltar
GIN GN Guinea
GLP GP Guadeloupe
GMB GM Gambia
GNB GW Guinea-Bissau
GNQ GQ Equatorial Guinea
GRC GR Greece
GRD GD Grenada
GRL GL Greenland
GTM GT Guatemala
GUF GF French Guiana
GUM GU Guam
GUY GY Guyana
HKG HK Hong Kong
HMD HM Heard Island and McDonald Islands
HND HN Honduras
HRV HR Croatia
HTI HT Haiti
HUN HU Hungary
IDN ID Indonesia
IMN IM Isle of Man
IND IN India
IOT IO British Indian Ocean Territory
IRL IE Ireland
IRN IR Iran, Islamic Republic of|Iran
IRQ IQ Iraq
ISL IS Iceland
ISR IL Israel
ITA IT Italy
JAM JM Jamaica
JEY JE Jersey
JOR JO Jordan
JPN JP Japan
KAZ KZ Kazakhstan
KEN KE Kenya
KGZ KG Kyrgyzstan
KHM KH Cambodia
KIR KI Kiribati
KNA KN Saint Kitts and Nevis
KOR KR Korea, Republic of|South Korea
KWT KW Kuwait
LAO LA Lao People's Democratic Republic|Laos
LBN LB Lebanon
LBR LR Liberia
LBY LY Libya
LCA LC Saint Lucia
LIE LI Liechtenstein
LKA LK Sri Lanka
LSO LS Lesotho
LTU LT Lithuania
LUX LU Luxembourg
LVA LV Latvia
MAC MO Macao
MAF MF Saint Martin (French part)
MAR MA Morocco
MCO MC Monaco
MDA MD Moldova, Republic of|Moldova
MDG MG Madagascar
MDV MV Maldives
MEX MX Mexico
MHL MH Marshall Islands
MKD MK North Macedonia
MLI ML Mali
MLT MT Malta
MMR MM Myanmar
MNE ME Montenegro
MNG MN Mongolia
MNP MP Northern Mariana Islands
MOZ MZ Mozambique
MRT MR Mauritania
MSR MS Montserrat
MTQ MQ Martinique
MUS MU Mauritius
MWI MW Malawi
MYS MY Malaysia
MYT YT Mayotte
NAM NA Namibia
NCL NC New Caledonia
NER NE Niger
NFK NF Norfolk Island
NGA NG Nigeria
NIC NI Nicaragua
NIU NU Niue
NLD NL Netherlands
NOR NO Norway
NPL NP Nepal
NRU NR Nauru
NZL NZ New Zealand
OMN OM Oman
PAK PK Pakistan
PAN PA Panama
PCN PN Pitcairn
PER PE Peru
PHL PH Philippines
PLW PW Palau
PNG PG Papua New Guinea
POL PL Poland
PRI PR Puerto Rico
PRK KP Korea, Democratic People's Republic of|North Korea
PRT PT Portugal
PRY PY Paraguay
PSE PS Palestine, State of
PYF PF French Polynesia
QAT QA Qatar
REU RE Réunion
ROU RO Romania
RUS RU Russian Federation
RWA RW Rwanda
SAU SA Saudi Arabia
SDN SD Sudan
SEN SN Senegal
SGP SG Singapore
SGS GS South Georgia and the South Sandwich Islands
SHN SH Saint Helena, Ascension and Tristan da Cunha
SJM SJ Svalbard and Jan Mayen
SLB SB Solomon Islands
SLE SL Sierra Leone
SLV SV El Salvador
SMR SM San Marino
SOM SO Somalia
SPM PM Saint Pierre and Miquelon
SRB RS Serbia
SSD SS South Sudan
STP ST Sao Tome and Principe
SUR SR Suriname
SVK SK Slovakia
SVN SI Slovenia
SWE SE Sweden
SWZ SZ Eswatini
SXM SX Sint Maarten (Dutch part)
SYC SC Seychelles
SYR SY Syrian Arab Republic|Syria
TCA TC Turks and Caicos Islands
TCD TD Chad
TGO TG Togo
THA TH Thailand
TJK TJ Tajikistan
TKL TK Tokelau
TKM TM Turkmenistan
TLS TL Timor-Leste
TON TO Tonga
TTO TT Trinidad and Tobago
TUN TN Tunisia
TUR TR Türkiye
TUV TV Tuvalu
TWN TW Taiwan, Province of China|Taiwan
TZA TZ Tanzania, United Republic of|Tanzania
UGA UG Uganda
UKR UA Ukraine
UMI UM United States Minor Outlying Islands
URY UY Uruguay
USA US United States
UZB UZ Uzbekistan
VAT VA Holy See (Vatican City State)
VCT VC Saint Vincent and the Grenadines
VEN VE Venezuela, Bolivarian Republic of|Venezuela
VGB VG Virgin Islands, British
VIR VI Virgin Islands, U.S.
VNM VN Viet Nam|Vietnam
VUT VU Vanuatu
WLF WF Wallis and Futuna
WSM WS Samoa
YEM YE Yemen
ZAF ZA South Africa
ZMB ZM Zambia
ZWE ZW Zimbabwe
"""

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
    for line in _ISO3166.splitlines():
        a3, a2, rest = line.split(" ", 2)
        alpha3[a3] = a2
        for name in rest.split("|"):
            names[name.lower()] = a2
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
