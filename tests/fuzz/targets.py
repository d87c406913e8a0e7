"""The parsers at the edge, each with what it may do with input it cannot use (issue 23).

One function per parser takes what a sender or an editor controls and asserts the contract:
bad input gives the parser's own typed error, naming the source and (for files) the line;
never another exception, never a hang (input sizes are bounded by the callers). The
hypothesis properties (``test_parsers_fuzz.py``) and the atheris harness (``atheris_main.py``)
call these same functions, so "what counts as a crash" is written once.
"""

from __future__ import annotations

import ipaddress
import re
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import httpx

from prevent.classification.diaspora import diaspora_errors
from prevent.classification.lexicon import load_lexicon_errors
from prevent.contracts import FeedKind
from prevent.feeds.cap import parse_cap
from prevent.feeds.catalog import FeedConfig, FeedRegistryError, load_feeds
from prevent.feeds.normalize import SUMMARY_MAX, TITLE_MAX, incidents_from_bytes
from prevent.feeds.parse import FeedParseError
from prevent.feeds.threat import ThreatLevelError, extract_level
from prevent.partners.registry import check_webhook_url, parse_registry
from prevent.platform.config import REPO_ROOT
from prevent.platform.yamlsource import SourceError
from prevent.rules.playbooks.loader import parse_sources

PLAYBOOKS = REPO_ROOT / "playbooks"
FEED_URL = "https://feeds.example/fuzz"
FIRST_SEEN = datetime(2030, 1, 1, tzinfo=UTC)
# A parser that takes longer than this on inputs of the sizes generated here is stuck: the
# inputs are at most tens of kilobytes, real ones parse in milliseconds.
SLOW_SECONDS = 20.0


class Slow(AssertionError):
    pass


def _timed(what: str, call: Callable[[], object]) -> object:
    started = time.monotonic()
    try:
        return call()
    finally:
        took = time.monotonic() - started
        if took > SLOW_SECONDS:
            raise Slow(f"{what} took {took:.1f} s")


# What YAML counts as a line break (an editor shows these as new lines too).
LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def _lines_named(problems: list[str], source: str, text: str) -> None:
    """Each problem is ``source:LINE: message`` with LINE a line of ``text``."""
    assert problems, "an error with no problem in it"
    last = len(LINE_BREAK.findall(text)) + 1
    pattern = re.compile(rf"{re.escape(source)}:(\d+): \S")
    for problem in problems:
        match = pattern.match(problem)
        assert match, f"not 'file:line: message': {problem!r}"
        assert 1 <= int(match.group(1)) <= last, f"line out of the file ({last} lines): {problem!r}"


# --------------------------------------------------------------------------- feeds


@cache
def feed_config(kind: FeedKind) -> FeedConfig:
    return FeedConfig(id=f"fuzz-{kind.value}".replace("_", "-"), url=f"{FEED_URL}/{kind.value}",
                      kind=kind, **({"level_pattern": r"level is ([A-Za-z ]{1,20})"}
                                    if kind is FeedKind.THREAT_LEVEL else {}))


FEED_KINDS = (FeedKind.RSS, FeedKind.ATOM, FeedKind.RDF, FeedKind.CAP, FeedKind.GEOJSON)


def feed(body: bytes, kind: FeedKind = FeedKind.RSS) -> None:
    """A fetched body through parse and normalize (what the watcher does with it): incidents
    and per-entry problems, or FeedParseError naming the feed's URL."""
    config = feed_config(kind)
    try:
        incidents, _parsed, problems = _timed(  # type: ignore[misc]
            "feed", lambda: incidents_from_bytes(body, config, first_seen=FIRST_SEEN))
    except FeedParseError as exc:
        assert exc.url == config.url and str(exc).startswith(config.url) and exc.reason
        return
    for incident in incidents:
        assert incident.title.strip() and len(incident.title) <= TITLE_MAX
        assert len(incident.summary or "") <= SUMMARY_MAX
        assert incident.published.utcoffset() is not None
        assert incident.published <= FIRST_SEEN.replace(year=2031)
        # Stored in PostgreSQL downstream, which cannot hold a NUL character in text.
        assert "\x00" not in repr(incident.model_dump()), "a NUL character in the incident"
    assert all(p.startswith("entry ") for p in problems), problems


def cap(body: bytes) -> None:
    """A standalone CAP document: one entry, or FeedParseError naming the URL."""
    try:
        parsed = _timed("cap", lambda: parse_cap(body, url=FEED_URL))
    except FeedParseError as exc:
        assert exc.url == FEED_URL and exc.reason
        return
    assert len(parsed.entries) == 1  # type: ignore[attr-defined]


def threat_level(body: bytes) -> None:
    config = feed_config(FeedKind.THREAT_LEVEL)
    try:
        level = _timed("threat level", lambda: extract_level(body, config))
    except ThreatLevelError as exc:
        assert str(exc)
        return
    assert isinstance(level, str) and level.strip()


# --------------------------------------------------------------------------- YAML files


def playbook(text: str, source: str = "fuzz/playbook.yaml") -> None:
    """A playbook (a file, or the console's editor): playbooks, or SourceError whose every
    problem is ``file:line: message``."""
    try:
        _timed("playbook", lambda: parse_sources([(source, text)]))
    except SourceError as exc:
        _lines_named(exc.problems, source, text)


@cache
def known_communities() -> frozenset[str]:
    from prevent.classification.lexicon import load_lexicon

    return frozenset(c.id for c in load_lexicon(PLAYBOOKS).communities.communities)


def diaspora(text: str, source: str = "fuzz/diaspora.yaml") -> None:
    """The diaspora map (a file, or the console's editor): problems as ``file:line``."""
    _data, problems = _timed("diaspora",  # type: ignore[misc]
                             lambda: diaspora_errors(text, source, set(known_communities())))
    if problems:
        _lines_named(problems, source, text)


LEXICON_FILES = ("communities.yaml", "incident_types.yaml", "lexicons/fr.yaml")


def lexicon(text: str, which: str = "lexicons/fr.yaml") -> None:
    """One lexicon file replaced by ``text`` beside the real others: ``file:line`` problems."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "lexicons").mkdir()
        for name in ("communities.yaml", "incident_types.yaml"):
            # copies, never symlinks: writing ``which`` must not reach the real files
            (directory / name).write_bytes((PLAYBOOKS / name).read_bytes())
        target = directory / which
        target.write_text(text, encoding="utf-8")
        problems = _timed("lexicon", lambda: load_lexicon_errors(directory))
        mine = [p for p in problems if p.startswith(f"{target}:")]  # type: ignore[union-attr]
        assert mine == problems, f"problems in files not changed: {problems}"
        if problems:
            _lines_named(problems, str(target), text)  # type: ignore[arg-type]


def feed_registry(text: str) -> None:
    """feeds.yaml: the feeds, or FeedRegistryError naming the file (and the line it knows)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "feeds.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            _timed("feed registry", lambda: load_feeds(path))
        except FeedRegistryError as exc:
            assert str(exc).startswith(str(path)), str(exc)
            if exc.line is not None:
                assert 1 <= exc.line <= len(LINE_BREAK.findall(text)) + 1, str(exc)


# --------------------------------------------------------------------------- partner registry


def partner_file(data: bytes, suffix: str = ".csv") -> None:
    """A partner registry file as `prevent partners import` and the console read it: the
    registry, or SourceError whose every problem is ``file:line: message``."""
    from prevent.partners import checks as registry_checks

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return  # refused before parsing (the console: 422 "not UTF-8"; the CLI: its message)

        def run() -> None:
            parsed = parse_registry(path, {"zone-a"})
            extra = registry_checks.file_problems(path, parsed, PLAYBOOKS, str(path))
            if extra:
                raise SourceError(extra)

        try:
            _timed("partner import", run)
        except SourceError as exc:
            universal = text.replace("\r\n", "\n").replace("\r", "\n")
            _lines_named(exc.problems, str(path), universal)
            if suffix == ".csv":  # what the console lists beside them
                _timed("orphan rows", lambda: registry_checks.orphan_contact_problems(text,
                                                                                     str(path)))


# --------------------------------------------------------------------------- webhook address

_IPV4_DIGITS = re.compile(r"[0-9.]+")


def webhook_url(url: str) -> None:
    """``check_webhook_url``: the URL unchanged, or ValueError with a reason. What it lets
    through, httpx (which sends) reads the same way: an http(s) URL whose host is a DNS name
    or an IP address in its one standard form, never an IPv4 address in another spelling."""
    try:
        accepted = check_webhook_url(url)
    except ValueError as exc:
        assert str(exc)
        return
    assert accepted == url
    parsed = httpx.URL(url)
    assert parsed.scheme in ("http", "https") and parsed.host
    assert not parsed.userinfo
    host = parsed.raw_host.decode("ascii")  # as sent: IDNA, not the Unicode form of .host
    if ":" in host:
        ipaddress.IPv6Address(host)
        return
    bare = host.removesuffix(".")
    assert bare.isascii(), host
    labels = bare.split(".")
    if labels[-1].isdigit() or labels[-1].lower().startswith("0x") or _IPV4_DIGITS.fullmatch(bare):
        # Read as an IPv4 address by resolvers: only its four-decimal form is allowed.
        try:
            canonical = str(ipaddress.IPv4Address(bare))
        except ValueError:
            canonical = None
        assert canonical == host, f"{url!r} passed; httpx connects to {host!r}"
