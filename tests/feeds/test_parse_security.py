"""Hostile documents: entity expansion, external entities, bodies that look like paths.

What feedparser 6.0.x does on its own (checked when this guard was written): it strips the
DOCTYPE with regexes and re-inserts "safe" literal entities, so plain billion-laughs and
SYSTEM entities do not expand; but a comment holding "<x" before the DOCTYPE, junk before
it, or an ENTITY line after it bypasses that, and a big literal entity referenced many
times is expanded by its loose parser without any limit. ``neutralise_dtd`` closes that.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest

from prevent.feeds.parse import FeedParseError, neutralise_dtd, parse_feed

URL = "https://example.test/feed.xml"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
<!ENTITY a "AAAAAAAAAA">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
<!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">
<!ENTITY i "&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;">
]>
<rss version="2.0"><channel><title>t</title>
<item><title>laugh &i; &a;</title><guid>1</guid><description>&i;</description></item>
</channel></rss>"""


def _xxe(target: str, *, prefix: str = "") -> bytes:
    return (f'<?xml version="1.0"?>\n{prefix}<!DOCTYPE rss [\n'
            f'<!ENTITY x SYSTEM "{target}">\n]>\n'
            '<rss version="2.0"><channel><title>t</title>'
            '<item><title>leak &x; end</title><guid>1</guid></item></channel></rss>').encode()


def _quadratic(prefix: str = "", subset: bool = True, size: int = 20_000) -> bytes:
    value = "A" * size
    if subset:
        dtd = f'<!DOCTYPE rss [\n<!ENTITY a "{value}">\n]>\n'
    else:  # a DOCTYPE without subset and a stray ENTITY line (feedparser re-inserts it)
        dtd = f'<!DOCTYPE rss>\n<!ENTITY a "{value}">\n'
    refs = "&a;" * size
    return (f'<?xml version="1.0"?>\n{prefix}{dtd}<rss version="2.0"><channel><title>t</title>'
            f"<item><title>{refs}</title><guid>1</guid></item></channel></rss>").encode()


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:  # http.server's naming
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"root:x:0:0:LEAKED")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[str]:
    """A local HTTP server that records any request: proof that nothing was fetched."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.hits = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)  # a quick shutdown()
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _all_text(parsed: object) -> str:
    entries = getattr(parsed, "entries", [])
    return " ".join(f"{e.title} {e.summary}" for e in entries)


def test_billion_laughs_does_not_expand() -> None:
    started = time.perf_counter()
    parsed = parse_feed(BILLION_LAUGHS, url=URL)
    assert time.perf_counter() - started < 2
    assert len(parsed.entries) == 1
    text = _all_text(parsed)
    assert "AAAAAAAAAA" not in text and len(text) < 200
    assert parsed.bozo and "internal subset removed" in (parsed.bozo_reason or "")


@pytest.mark.parametrize("prefix", ["", "<!-- <x -->\n", "junk\n"])
def test_quadratic_blowup_does_not_expand(prefix: str) -> None:
    started = time.perf_counter()
    try:
        parsed = parse_feed(_quadratic(prefix), url=URL)
    except FeedParseError:
        return  # refusing is fine too; expanding is not
    assert time.perf_counter() - started < 5
    assert "AAAAAAAAAA" not in _all_text(parsed)


def test_stray_entity_after_doctype_is_not_reinserted() -> None:
    parsed = parse_feed(_quadratic(subset=False), url=URL)
    assert "AAAAAAAAAA" not in _all_text(parsed)


@pytest.mark.parametrize("prefix", ["", "<!-- <x -->\n"])
def test_external_file_entity_is_not_read(prefix: str) -> None:
    parsed = parse_feed(_xxe("file:///etc/passwd", prefix=prefix), url=URL)
    text = _all_text(parsed)
    assert "root:" not in text
    assert "leak" in text  # the entry itself survives


@pytest.mark.parametrize("prefix", ["", "<!-- <x -->\n"])
def test_external_http_entity_is_not_fetched(listener: str, prefix: str) -> None:
    for target in ("http://127.0.0.1:1/x", f"{listener}/xxe"):
        parsed = parse_feed(_xxe(target, prefix=prefix), url=URL)
        assert "LEAKED" not in _all_text(parsed)
    dtd = (f'<?xml version="1.0"?>\n<!DOCTYPE rss SYSTEM "{listener}/ext.dtd">\n'
           '<rss version="2.0"><channel><title>t</title><item><title>x</title></item>'
           "</channel></rss>").encode()
    parse_feed(dtd, url=URL)
    param = (f'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY % p SYSTEM "{listener}/p"> %p;]>\n'
             '<rss version="2.0"><channel><title>t</title><item><title>x</title></item>'
             "</channel></rss>").encode()
    parse_feed(param, url=URL)
    assert _Recorder.hits == []


def test_cap_with_dtd_is_refused(listener: str) -> None:
    body = (f'<?xml version="1.0"?>\n<!DOCTYPE alert [<!ENTITY x SYSTEM "{listener}/c">]>\n'
            '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&x;</identifier>'
            "</alert>").encode()
    with pytest.raises(FeedParseError, match="refused"):
        parse_feed(body, url=URL)
    assert _Recorder.hits == []


def test_utf16_document_is_guarded_too() -> None:
    body = BILLION_LAUGHS.decode().replace('version="1.0"', 'version="1.0" encoding="utf-16"')
    parsed = parse_feed(body.encode("utf-16"), url=URL)
    assert len(parsed.entries) == 1
    assert "AAAAAAAAAA" not in _all_text(parsed)


def test_body_that_looks_like_a_path_is_not_opened() -> None:
    # feedparser.parse(bytes) tries the bytes as a file name first.
    with pytest.raises(FeedParseError):
        parse_feed(b"/etc/passwd", url=URL)


def test_neutralise_keeps_line_numbers_and_plain_doctype() -> None:
    body = b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY a "x>]y">\n]>\n<rss/>'
    out, note = neutralise_dtd(body)
    assert out == b'<?xml version="1.0"?>\n<!DOCTYPE rss>\n\n\n<rss/>'
    assert note == "DOCTYPE internal subset removed"
    plain = b'<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" "x.dtd">\n<rss/>'
    assert neutralise_dtd(plain) == (plain, None)
    with pytest.raises(ValueError):
        neutralise_dtd(b'<!DOCTYPE rss [ <!ENTITY a "unterminated')


def test_unterminated_subset_is_a_parse_error() -> None:
    with pytest.raises(FeedParseError, match="refused"):
        parse_feed(b'<?xml version="1.0"?><!DOCTYPE rss [ <!ENTITY a "x"', url=URL)
