"""Properties over arbitrary input (hypothesis)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from fixtures.properties import examples
from hypothesis import example, given, settings
from hypothesis import strategies as st

from prevent.feeds.text import canonical_url, html_to_text, truncate

TAG = re.compile(r"<[A-Za-z/!?]")

_param = st.tuples(
    st.sampled_from(["utm_source", "UTM_Medium", "utm_campaign", "utm_", "utm%5Fterm", "id",
                     "q", "page", "fbclid", "ref", "x"]),
    st.text(alphabet="abcXYZ019-_.%+ =&#?/", max_size=8),
)
_urls = st.builds(
    lambda scheme, host, port, path, params, frag: (
        f"{scheme}://{host}{port}{path}?" + "&".join(f"{k}={v}" for k, v in params) + frag),
    st.sampled_from(["http", "https", "HTTP", "HtTpS"]),
    st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,10}\.)?[A-Za-z]{2,5}", fullmatch=True),
    st.sampled_from(["", ":80", ":443", ":8080"]),
    st.text(alphabet="/abcAB%20.-~", max_size=15).map(lambda p: "/" + p),
    st.lists(_param, max_size=5),
    st.sampled_from(["", "#frag", "#"]),
)


def _no_utm(url: str) -> bool:
    query = urlsplit(url).query
    keys = [k for k, _ in parse_qsl(query, keep_blank_values=True)]
    return not any(k.strip().lower().startswith("utm_") for k in keys)


@settings(max_examples=examples(400), deadline=None)
@given(st.one_of(_urls, st.text(max_size=60)))
@example("https://E.com/a?utm_source=x&b=1#f")
@example("http://a.b/?utm%5Fsource=1&utm_medium")
@example("http://[::1]:80/x?q=1")
def test_canonical_url_idempotent_and_untracked(url: str) -> None:
    once = canonical_url(url)
    if once is None:
        return
    assert canonical_url(once) == once
    assert _no_utm(once)
    assert "#" not in once
    parts = urlsplit(once)
    assert parts.scheme in ("http", "https") and parts.netloc == parts.netloc.lower()


@settings(max_examples=examples(200), deadline=None)
@given(_urls, st.sampled_from(["https://base.example/a/b/feed.xml", "http://x.org/"]))
def test_canonical_url_with_base_is_absolute_and_stable(url: str, base: str) -> None:
    relative = url.split("://", 1)[1].split("/", 1)[-1]
    once = canonical_url(relative, base)
    assert once is not None and once.startswith(("http://", "https://"))
    assert canonical_url(once) == once and _no_utm(once)


_html_bits = st.sampled_from([
    "<", ">", "&", ";", "<b>", "</b>", "<script>", "</script>", "<style>", "<!--", "-->",
    "<![CDATA[", "]]>", "&lt;", "&gt;", "&amp;lt;", "&#60;", "&#x3c;", "<a href='x'>", "</",
    "<?", "<!", "script", " ", "\n", "x", "é", "<br/>", "<img src=x onerror=alert(1)>",
])


@settings(max_examples=examples(500), deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(_html_bits, max_size=30).map("".join)))
@example("&lt;script&gt;alert(1)&lt;/script&gt;")
@example("&amp;lt;b&amp;gt;x")
@example("<<b>b>")
def test_html_to_text_never_returns_tags(html: str) -> None:
    text = html_to_text(html)
    assert not TAG.search(text)
    assert text == text.strip() and "  " not in text and "\n" not in text


@given(st.text(max_size=500), st.integers(min_value=2, max_value=300))
def test_truncate_bounded(text: str, limit: int) -> None:
    out = truncate(text, limit)
    assert len(out) <= limit
    assert out == text or out.endswith("\u2026")
