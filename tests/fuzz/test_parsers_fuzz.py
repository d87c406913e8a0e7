"""Property tests of the parsers at the edge (issue 23, point 4): feeds (RSS, Atom, RDF, CAP,
GeoJSON, threat level), the YAML files people edit (playbooks, lexicon, diaspora map, feed
registry, partner registry), the partner CSV import and the webhook address check.

Inputs are documents of the right shape with generated values, then damaged: characters that
mean something to the format put in, parts cut out, bytes that are not text. ``targets``
holds the contract each parser is held to; the ``@example``s are inputs that once broke one.
"""

from __future__ import annotations

import csv
import io
import json
from xml.sax.saxutils import escape

from hypothesis import example, given
from hypothesis import strategies as st

from prevent.contracts import FeedKind
from prevent.partners.registry import CSV_CONTACT_FIELDS, CSV_SITE_FIELDS

from . import targets
from .conftest import fuzz_settings

# --------------------------------------------------------------------------- damage


def _damage(text: str, edits: list[tuple[float, int, str]]) -> str:
    for where, cut, put in edits:
        at = int(where * len(text))
        text = text[:at] + put + text[at + cut:]
    return text


def damaged(documents: st.SearchStrategy[str], bits: st.SearchStrategy[str],
            edits: int = 6) -> st.SearchStrategy[str]:
    """``documents`` with up to ``edits`` edits: a cut of up to 40 characters, and a piece of
    the format's syntax or any short text put in its place."""
    edit = st.tuples(st.floats(0, 1), st.integers(0, 40), bits | st.text(max_size=8))
    return st.builds(_damage, documents, st.lists(edit, max_size=edits))


TEXT = st.text(max_size=60)
XML_BITS = st.sampled_from([
    "<", ">", "&", "&amp;", "&#0;", "&#x110000;", "&bogus;", "<![CDATA[", "]]>", "<!--", "-->",
    "<?xml version='1.0' encoding='latin-1'?>", "<!DOCTYPE x [<!ENTITY a 'b'>]>", "&a;",
    '<!ENTITY % p SYSTEM "http://169.254.169.254/">', "</item>", "<item>", "<entry>",
    "</entry>", "xmlns=\"\"", "xmlns:cap=\"urn:oasis:names:tc:emergency:cap:1.2\"", "\x00",
    "\ufeff", "\ud7ff", "\n", "\r", "\t", " ", '"', "'", "=", "/", "9999-99-99T99:99:99Z",
    "Tue, 31 Feb 2024 25:61:61 +9999", "1e999", "-0", "NaN", "<a href='javascript:x'>",
    "<script>", "<lat>", "</lat>", "91,181", "<polygon>1,2 3</polygon>", "<circle>a,b 5</circle>"])


def _xml(value: str) -> str:
    return escape(value.replace("\x00", ""))


def _rss(title: str, summary: str, link: str, date: str, guid: str, extra: str) -> str:
    item = (f"<item><title>{_xml(title)}</title><description>{_xml(summary)}</description>"
            f"<link>{_xml(link)}</link><pubDate>{_xml(date)}</pubDate><guid>{_xml(guid)}</guid>"
            f"<category>{_xml(extra)}</category>"
            f"<georss:point>{_xml(extra)}</georss:point></item>")
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
            'xmlns:georss="http://www.georss.org/georss"><channel><title>t</title>'
            f"<link>https://news.example/</link><ttl>{_xml(guid)}</ttl>{item}{item}</channel></rss>")


def _atom(title: str, summary: str, link: str, date: str, guid: str, extra: str) -> str:
    return ('<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" xml:lang="fr">'
            f'<title>t</title><link rel="hub" href="{_xml(link)}"/><entry><id>{_xml(guid)}</id>'
            f'<title type="html">{_xml(title)}</title><summary>{_xml(summary)}</summary>'
            f'<link href="{_xml(link)}"/><updated>{_xml(date)}</updated>'
            f"<category term=\"{_xml(extra)}\"/></entry></feed>")


def _rdf(title: str, summary: str, link: str, date: str, guid: str, extra: str) -> str:
    return ('<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
            ' xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f'<channel rdf:about="{_xml(link)}"><title>t</title></channel>'
            f'<item rdf:about="{_xml(guid)}"><title>{_xml(title)}</title><link>{_xml(link)}</link>'
            f"<description>{_xml(summary)}</description><dc:date>{_xml(date)}</dc:date>"
            f"<dc:subject>{_xml(extra)}</dc:subject></item></rdf:RDF>")


def _cap(title: str, summary: str, link: str, date: str, guid: str, extra: str) -> str:
    info = (f"<info><language>{_xml(extra[:5])}</language><category>Safety</category>"
            f"<event>{_xml(title)}</event><urgency>Immediate</urgency><severity>Severe</severity>"
            f"<certainty>Observed</certainty><effective>{_xml(date)}</effective>"
            f"<headline>{_xml(title)}</headline><description>{_xml(summary)}</description>"
            f"<web>{_xml(link)}</web><area><areaDesc>{_xml(extra)}</areaDesc>"
            f"<polygon>{_xml(extra)}</polygon><circle>{_xml(summary[:20])}</circle></area></info>")
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
            f"<identifier>{_xml(guid)}</identifier><sender>s@example.org</sender>"
            f"<sent>{_xml(date)}</sent><status>Actual</status><msgType>Update</msgType>"
            f"<scope>Public</scope><references>s,{_xml(guid)},{_xml(date)} a,b,c</references>"
            f"{info}{info}</alert>")


def _geojson(title: str, summary: str, link: str, date: str, guid: str, extra: str) -> str:
    def number(text: str) -> object:
        try:
            return float(text)
        except ValueError:
            return text

    feature = {"type": "Feature", "id": guid,
               "properties": {"title": title, "place": summary, "url": link, "time": number(date),
                              "updated": date, "mag": number(extra), "type": extra},
               "geometry": {"type": "Point", "coordinates": [number(extra), number(date), 10]}}
    return json.dumps({"type": "FeatureCollection", "metadata": {"title": title, "url": link},
                       "features": [feature, feature]})


FEED_SHAPES = {FeedKind.RSS: _rss, FeedKind.ATOM: _atom, FeedKind.RDF: _rdf, FeedKind.CAP: _cap,
               FeedKind.GEOJSON: _geojson}
DATES = st.sampled_from(["2024-05-01T10:00:00Z", "Wed, 01 May 2024 10:00:00 GMT", "", "0",
                         "1714557600", "2999-01-01T00:00:00+14:00", "1900-01-01", "yesterday"]) | TEXT
LINKS = st.sampled_from(["https://news.example/a?utm_source=x#f", "/relative/path", "", "javascript:x",
                         "http://[::1", "http://%zz", "mailto:a@b"]) | TEXT


def _document(kind: FeedKind) -> st.SearchStrategy[str]:
    return st.builds(FEED_SHAPES[kind], TEXT, st.text(max_size=300), LINKS, DATES, TEXT, TEXT)


def _encoded(kind: FeedKind) -> st.SearchStrategy[bytes]:
    text = damaged(_document(kind), XML_BITS if kind is not FeedKind.GEOJSON
                   else st.sampled_from(['{', '}', '[', ']', '"', ',', ':', 'null', '1e999', '-',
                                         '"type"', '"Feature"', '\\u0000', '\\ud800', '[' * 50]))
    return st.builds(lambda t, enc: t.encode(enc, "replace"), text,
                     st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"])) | st.binary(max_size=200)


@fuzz_settings(60)
@given(kind=st.sampled_from(targets.FEED_KINDS), data=st.data())
@example(kind=FeedKind.RSS, data=None)
def test_feed_bodies(kind: FeedKind, data: st.DataObject | None) -> None:
    if data is None:  # the explicit examples: nesting, entity expansion, a huge number
        for body in (b"<rss>" * 5000, b"[" * 100_000, b'{"type":"FeatureCollection","features":'
                     + b"[" * 5000, b'<!DOCTYPE r [<!ENTITY a "' + b"x" * 1000 + b'">]><rss>&a;&a;',
                     b'{"type":"Feature","properties":{"time":1e400},"geometry":null}'):
            for each in targets.FEED_KINDS:
                targets.feed(body, each)
        return
    targets.feed(data.draw(_encoded(kind), label="body"), kind)


@fuzz_settings(60)
@given(body=_encoded(FeedKind.CAP))
def test_cap_documents(body: bytes) -> None:
    targets.cap(body)


@fuzz_settings(40)
@given(body=st.builds(lambda a, b: (a + "the level is " + b).encode(), TEXT, TEXT) | st.binary(max_size=300))
def test_threat_level_pages(body: bytes) -> None:
    targets.threat_level(body)


# --------------------------------------------------------------------------- YAML files

YAML_BITS = st.sampled_from([
    ":", ": ", "- ", "-", "[", "]", "{", "}", ",", "&a ", "*a", "*missing", "!!str ", "!!binary ",
    "!!python/object/apply:os.system ['true'] ", "!!set ", "!!omap ", "<<: *a\n", "? ", "|", ">",
    "'", '"', "#", "\n", "\n  ", "\n- ", "  ", "\t", "~", "null", "-1", "1e999", "0x1F", ".nan",
    "2024-13-45", "\x00", "\ufeff", "\u2028", "\x85", "\U0001F600", "%YAML 1.1\n", "---\n",
    "...\n", "id: x\n", "version: 99\n", "[" * 200, "{a: " * 100])


def _file(name: str) -> str:
    return (targets.PLAYBOOKS / name).read_text(encoding="utf-8")


def _bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nid: *a{levels - 1}\n"


NASTY_YAML = [_bomb(), "[" * 10_000, "- " * 3000 + "x", "a: 1\na: 2\n", "\x00", "? [a]\n: b\n",
              "id: !!python/object/apply:os.system ['true']\n", "&a [*a]", "%TAG ! x\n--- !y\n",
              "x: " + "9" * 5000, "\ufeff\ufeffa: b", "--- a\n--- b\n", "a: *b\n"]


def yaml_texts(*files: str) -> st.SearchStrategy[str]:
    real = st.sampled_from([_file(f) for f in files])
    # Cut to a few kilobytes around a random place: enough structure, bounded time.
    windows = st.builds(lambda t, at: t[int(at * len(t)) // 2:][:6000], real, st.floats(0, 1))
    return damaged(real | windows, YAML_BITS) | st.sampled_from(NASTY_YAML) | st.text(max_size=200)


PLAYBOOK_FILES = ("place-of-worship-attack.yaml", "threat-level-change.yaml", "partner-report.yaml",
                  "observance-elevated-risk.yaml")


@fuzz_settings(80)
@given(text=yaml_texts(*PLAYBOOK_FILES))
@example(text=_bomb())
@example(text="[" * 10_000)
@example(text="?    \ufffd")  # atheris: an empty value at the end was marked a line past it
@example(text="---")  # atheris: the same for an empty document
def test_playbook_yaml(text: str) -> None:
    targets.playbook(text)


@fuzz_settings(40)
@given(text=yaml_texts("diaspora.yaml"))
@example(text=_bomb())
@example(text="countries: *a\n")
@example(text="?    \ufffd")
@example(text="---")
def test_diaspora_yaml(text: str) -> None:
    targets.diaspora(text)


@fuzz_settings(30)
@given(which=st.sampled_from(targets.LEXICON_FILES), data=st.data())
def test_lexicon_yaml(which: str, data: st.DataObject) -> None:
    text = data.draw(yaml_texts(which) | st.sampled_from([_bomb(), "- " * 3000 + "x"]), label="text")
    targets.lexicon(text, which)


FEEDS_YAML = """\
feeds:
  - id: bbc-world
    url: https://feeds.example/world.xml
    kind: rss
    interval_seconds: 300
    language: en
    trust_weight: 1.5
    country: GB
  - id: usgs
    url: https://quakes.example/all_hour.geojson
    kind: geojson
    enabled: false
  - id: level
    url: https://gov.example/threat
    kind: threat_level
    level_pattern: 'level is ([a-z]+)'
"""


@fuzz_settings(40)
@given(text=damaged(st.just(FEEDS_YAML), YAML_BITS) | st.sampled_from(NASTY_YAML))
@example(text=_bomb())
def test_feed_registry_yaml(text: str) -> None:
    targets.feed_registry(text)


@fuzz_settings(30)
@given(text=damaged(st.just((targets.REPO_ROOT / "prevent/platform/demo/partners.yaml").read_text("utf-8")),
                    YAML_BITS) | st.sampled_from(NASTY_YAML))
@example(text=_bomb())
def test_partner_registry_yaml(text: str) -> None:
    targets.partner_file(text.encode("utf-8", "surrogatepass"), ".yaml")


# --------------------------------------------------------------------------- partner CSV

HEADER = list(dict.fromkeys(("site_id", "site_name", "communities", "municipality",
                             *CSV_SITE_FIELDS, *CSV_CONTACT_FIELDS)))
CELLS = {
    "site_id": st.sampled_from(["s1", "s2", "", " s1 "]),
    "communities": st.sampled_from(["muslim", "jewish;sikh", "muslin", "", ";;"]),
    "lat": st.sampled_from(["45.4", "91", "nan", "inf", "1e999", "-0", ""]),
    "lon": st.sampled_from(["-75.7", "181", "NaN", ""]),
    "zone_id": st.sampled_from(["zone-a", "zone-b", ""]),
    "contact_id": st.sampled_from(["c1", "c2", "", " "]),
    "email": st.sampled_from(["a@example.org", "a@", "a@b@c", "", "é@例え.jp"]),
    "phone": st.sampled_from(["+1 613 555 0100", "123", "+" * 30, ""]),
    "webhook_url": st.sampled_from(["https://partner.example/hook", "http://0177.0.0.1/h",
                                    "http://0177。0。0。1/h", "ftp://x", "http://[::1]:99999/", ""]),
    "channels": st.sampled_from(["email", "email;sms;webhook", "fax", ""]),
    "consent": st.sampled_from(["yes", "no", "1", ""]),
    "kind": st.sampled_from(["place_of_worship", "school", "castle", ""]),
    "language": st.sampled_from(["en", "fr", "xx", ""]),
}
CELL_TEXT = st.text(max_size=30) | st.sampled_from(['"', '""', ",", "\n", "\r", "\r\n", "\x00",
                                                   "=cmd|' /C calc'!A0", "\ufeff"])


def _cell(column: str) -> st.SearchStrategy[str]:
    return CELLS.get(column, st.just("x")) | CELL_TEXT


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    header = draw(st.lists(st.sampled_from(HEADER), min_size=1, max_size=len(HEADER), unique=True)
                  | st.just(HEADER))
    rows = draw(st.lists(st.tuples(*[_cell(c) for c in header]), max_size=8))
    if draw(st.booleans()):
        out = io.StringIO()
        writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])))
        writer.writerow(header)
        writer.writerows(rows)
        text = out.getvalue()
    else:  # written by hand, unquoted
        text = "\n".join(",".join(r) for r in [header, *rows])
    text = draw(damaged(st.just(text), st.sampled_from(['"', ",", "\n", "\r", "\x00", ";"]), 3))
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig"])), "surrogatepass")


@fuzz_settings(80)
@given(data=csv_files())
@example(data=("site_id,site_name,communities,municipality\ns1,\"" + "x" * 200_000
               + "\",muslim,Ottawa\n").encode())
@example(data=b"site_id,site_name,communities,municipality,email\rs1,S,muslim,Ottawa,a@b.org\r")
@example(data=b"site_id,site_name,communities,municipality\n\"s1,S,muslim,Ottawa\n")
def test_partner_csv(data: bytes) -> None:
    targets.partner_file(data, ".csv")


# --------------------------------------------------------------------------- webhook address

HOST_BITS = st.sampled_from(["127.0.0.1", "0177", "0x7f", "0", "1", "255", "256", "4294967295",
                             "example", "com", "xn--", "-a", "a-", "_", "例え", "ß", "ＡＢ", "%2e",
                             "[::1]", "[::ffff:127.0.0.1]", "[2002:7f00:1::]", "[v1.x]", "[fe80::1%25eth0]"])
DOTS = st.sampled_from([".", ".", ".", "。", "．", "｡", ".."])


@st.composite
def urls(draw: st.DrawFn) -> str:
    labels = draw(st.lists(HOST_BITS | st.text(alphabet="0123456789abcdefx", min_size=1, max_size=5),
                           min_size=1, max_size=4))
    host = "".join(label + (draw(DOTS) if i < len(labels) - 1 else "") for i, label in enumerate(labels))
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "ftp", "javascript", ""]))
    userinfo = draw(st.sampled_from(["", "", "user@", "a:b@", "@"]))
    port = draw(st.sampled_from(["", "", ":80", ":0", ":65536", ":-1", ": 80", ":0x50"]))
    path = draw(st.sampled_from(["/", "/hook", "", "?q=1", "#@evil.example", "\\@evil.example",
                                 "/\r\nX: y", "/%00"]))
    return f"{scheme}://{userinfo}{host}{port}{path}"


@fuzz_settings(400)
@given(url=urls() | st.text(max_size=80))
@example(url="http://0177.0.0.1/hook")
@example(url="http://0177。0。0。1/hook")  # ideographic full stops: httpx reads 0177.0.0.1
@example(url="http://0x7f．1/")
@example(url="http://127.0.0.1。/x")
def test_webhook_urls(url: str) -> None:
    targets.webhook_url(url)
