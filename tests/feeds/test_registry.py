"""The feed registry file: strict loading with file:line:field errors, round-trip saving."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from prevent.contracts import FeedKind
from prevent.feeds.catalog import FeedConfig, FeedRegistryError, load_feeds, save_feeds

GOOD = """\
feeds:
  - id: gdacs
    url: https://www.gdacs.org/xml/rss.xml
    kind: rss
    interval_seconds: 600
    trust_weight: 1.5
  - id: usgs-significant
    url: https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/significant_hour.geojson
    kind: geojson
  - id: uk-threat
    url: https://www.mi5.gov.uk/UKThreatLevel/UKThreatLevel.xml
    kind: threat_level
    country: gb
    level_pattern: "current threat level .* is (\\\\w+)"
  - id: local-file
    url: file:/srv/feeds/test.xml
    kind: atom
    enabled: false
    language: pt-BR
    region: Lisboa
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_good_file(tmp_path: Path) -> None:
    feeds = load_feeds(write(tmp_path, GOOD))
    assert [f.id for f in feeds] == ["gdacs", "usgs-significant", "uk-threat", "local-file"]
    gdacs, usgs, threat, local = feeds
    assert gdacs.kind is FeedKind.RSS and gdacs.interval_seconds == 600
    assert gdacs.trust_weight == 1.5 and gdacs.enabled
    assert usgs.interval_seconds == 300 and usgs.trust_weight == 1.0 and usgs.country is None
    assert threat.country == "GB" and threat.level_pattern == r"current threat level .* is (\w+)"
    assert not local.enabled and local.language == "pt-BR" and local.region == "Lisboa"


def test_round_trip(tmp_path: Path) -> None:
    feeds = load_feeds(write(tmp_path, GOOD))
    out = tmp_path / "sub" / "saved.yaml"
    save_feeds(out, feeds)
    assert load_feeds(out) == feeds
    text = out.read_text()
    assert "interval_seconds: 300" not in text  # defaults are left out
    assert not list(out.parent.glob(".*.tmp"))


def test_save_quotes_yaml_booleans(tmp_path: Path) -> None:
    feed = FeedConfig(id="no", url="https://example.no/rss", kind="rss", country="NO",
                      language="no")
    out = tmp_path / "feeds.yaml"
    save_feeds(out, [feed])
    assert load_feeds(out) == [feed]


def test_empty_and_null(tmp_path: Path) -> None:
    assert load_feeds(write(tmp_path, "")) == []
    assert load_feeds(write(tmp_path, "feeds:\n")) == []
    assert load_feeds(write(tmp_path, "feeds: []\n")) == []


@pytest.mark.parametrize(("text", "line", "field", "message"), [
    ("feeds:\n  - id: a\n    url: https://x.org/\n    kind: rss\n    intervall: 5\n",
     5, "feeds[0].intervall", "Extra inputs"),
    ("feeds:\n  - id: a\n    url: https://x.org/\n    kind: podcast\n", 4, "feeds[0].kind", ""),
    ("feeds:\n  - id: a\n    url: ftp://x.org/\n    kind: rss\n", 3, "feeds[0].url", "http"),
    ("feeds:\n  - id: A b\n    url: https://x.org/\n    kind: rss\n", 2, "feeds[0].id", "slug"),
    ("feeds:\n  - id: a\n    url: https://x.org/\n    kind: rss\n    interval_seconds: 5\n",
     5, "feeds[0].interval_seconds", "greater than or equal to 10"),
    ("feeds:\n  - id: a\n    url: https://x.org/\n    kind: rss\n    country: NO\n",
     5, "feeds[0].country", "boolean"),
    ("feeds:\n  - id: a\n    url: https://x.org/\n    kind: rss\n    country: GBR\n",
     5, "feeds[0].country", "alpha-2"),
    ("feeds:\n  - url: https://x.org/\n    kind: rss\n", 2, "feeds[0].id", "required"),
    ("feeds:\n  - id: t\n    url: https://x.org/\n    kind: threat_level\n"
     "    level_pattern: '(a)(b)'\n", 5, "feeds[0].level_pattern", "exactly one group"),
    ("feeds:\n  - id: t\n    url: https://x.org/\n    kind: threat_level\n", 2, "feeds[0]",
     "level_pattern is required"),
    ("feeds:\n  - id: a\n    url: https://x.org/\n    kind: rss\n"
     "  - id: a\n    url: https://y.org/\n    kind: atom\n", 5, "feeds[1].id", "duplicate id"),
    ("feeds:\n  - id: a\n    id: b\n    url: https://x.org/\n    kind: rss\n", 3, "id",
     "duplicate key"),
    ("feeds:\n  - id: a\n    url: [unclosed\n", None, None, "invalid YAML"),
    ("feed:\n  - id: a\n", 1, "feed", "unknown top-level key"),
    ("feeds:\n  id: a\n", 2, "feeds", "must be a list"),
    ("feeds:\n  - just a string\n", 2, "feeds[0]", "mapping"),
    ("- id: a\n", 1, None, "expected a mapping"),
])
def test_errors_name_file_line_and_field(tmp_path: Path, text: str, line: int | None,
                                         field: str | None, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FeedRegistryError) as err:
        load_feeds(path)
    exc = err.value
    assert exc.path == str(path) and str(path) in str(exc)
    if line is not None:
        assert exc.line == line and f"{path}:{line}:" in str(exc)
    if field is not None:
        assert exc.field is not None and exc.field.startswith(field)
    assert message in str(exc)


def test_yaml_error_has_a_line(tmp_path: Path) -> None:
    with pytest.raises(FeedRegistryError) as err:
        load_feeds(write(tmp_path, "feeds:\n  - id: a\n    url: [unclosed\n"))
    assert err.value.line is not None


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FeedRegistryError, match="cannot read"):
        load_feeds(tmp_path / "nope.yaml")


def test_model_rules() -> None:
    with pytest.raises(ValidationError):
        FeedConfig(id="a", url="https://x.org", kind="rss", level_pattern="(x)")
    with pytest.raises(ValidationError):
        FeedConfig(id="a", url="https://x.org", kind="rss", trust_weight=11)
    with pytest.raises(ValidationError):
        FeedConfig(id="a", url="https://", kind="rss")
    with pytest.raises(ValidationError):
        FeedConfig(id="a", url="https://x.org", kind="rss", unknown=1)  # type: ignore[call-arg]
    assert FeedConfig(id="a_b-1", url="file:feeds/x.xml", kind="cap").url == "file:feeds/x.xml"


def test_save_refuses_duplicate_ids(tmp_path: Path) -> None:
    feed = FeedConfig(id="a", url="https://x.org", kind="rss")
    with pytest.raises(FeedRegistryError, match="duplicate"):
        save_feeds(tmp_path / "f.yaml", [feed, feed])
