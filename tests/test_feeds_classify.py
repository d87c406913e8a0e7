"""Real alert feeds through `prevent feeds check --classify`: the source's own assessment
decides (green PAGER quakes and old drought episodes raise no alarm), and places are read
as the longest name ("New Mexico" is in the US)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prevent.classification.sources import assess
from prevent.cli.classify_commands import classify_incidents
from prevent.feeds.dryrun import check_feed
from prevent.platform.config import Settings

ROOT = Path(__file__).resolve().parents[1]
FEEDS = ROOT.parent / "shared" / "data" / "feeds"
needs_feeds = pytest.mark.skipif(not FEEDS.is_dir(), reason="../shared/data/feeds not present")


def _verdicts(path: Path) -> list[tuple[object, dict]]:
    settings = Settings(playbooks_dir=ROOT / "playbooks")
    incidents, _ = asyncio.run(check_feed(str(path), settings=settings))
    return list(zip(incidents, classify_incidents(incidents, settings), strict=True))


def _alarm(verdict: dict) -> bool:
    c = verdict["classification"]
    return bool(verdict["playbooks"]) or (bool(c["communities"]) and c["severity"] >= 2)


@needs_feeds
def test_green_pager_quakes_raise_no_alarm() -> None:
    verdicts = _verdicts(FEEDS / "json" / "usgs_significant_month_2023-10-11.geojson")
    green = [(i, v) for i, v in verdicts if "pager:green" in i.categories]
    assert len(green) >= 5
    for incident, verdict in green:
        assert not _alarm(verdict), incident.title
        assert verdict["classification"]["severity"] == 1
    red = [v for i, v in verdicts if "pager:red" in i.categories]
    assert red and all("diaspora-disaster-welfare" in v["playbooks"] for v in red)


@needs_feeds
def test_drought_bulletins_and_green_gdacs_alerts_raise_no_alarm() -> None:
    verdicts = _verdicts(FEEDS / "rss" / "gdacs_rss_2019-12-30.xml")
    droughts = [(i, v) for i, v in verdicts if "gdacs:eventtype:DR" in i.categories]
    assert len(droughts) >= 4
    for incident, verdict in droughts:
        assert not _alarm(verdict), incident.title
    for incident, verdict in verdicts:
        if "gdacs:alertlevel:Green" in incident.categories:
            assert not _alarm(verdict), incident.title


@needs_feeds
def test_nws_new_mexico_warning_is_located_in_the_us() -> None:
    verdicts = _verdicts(FEEDS / "atom" / "nws_cap_atom_us_2018-08-15.xml")
    new_mexico = [v for i, v in verdicts if "New Mexico" in f"{i.title} {i.summary}"]
    assert new_mexico
    for verdict in new_mexico:
        assert verdict["classification"]["country"] == "US"
        assert "diaspora-disaster-welfare" not in verdict["playbooks"]


@needs_feeds
def test_feeds_check_classify_prints_classification_and_playbooks() -> None:
    from prevent.cli.main import app

    result = CliRunner().invoke(app, ["feeds", "check", "--json", "--classify",
                                      str(FEEDS / "json" / "usgs_significant_month_2023-10-11.geojson")])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines
    for line in lines:
        assert set(line["classification"]) >= {"communities", "incident_type", "severity", "country", "lang"}
        assert isinstance(line["playbooks"], list)


@pytest.mark.parametrize(("categories", "cap", "severity"), [
    (["pager:green", "usgs:sig:900"], {}, 1),
    (["pager:yellow"], {}, 2),
    (["pager:orange"], {}, 3),
    (["pager:red"], {}, 4),
    (["usgs:sig:300"], {}, 1),
    (["usgs:sig:700"], {}, 2),
    (["gdacs:eventtype:DR", "gdacs:alertlevel:Orange", "gdacs:episodealertlevel:Orange",
      "gdacs:iscurrent:false"], {}, 1),
    (["gdacs:eventtype:DR", "gdacs:alertlevel:Red", "gdacs:episodealertlevel:Red",
      "gdacs:iscurrent:true"], {}, 4),
    (["gdacs:eventtype:DR", "gdacs:alertlevel:Orange", "gdacs:episodealertlevel:Green",
      "gdacs:iscurrent:true"], {}, 1),
    (["gdacs:eventtype:TC", "gdacs:alertlevel:Orange", "gdacs:episodealertlevel:Green"], {}, 3),
    ([], {"cap_severity": "Extreme"}, 4),
    ([], {"cap_severity": "Severe", "cap_msg_type": "Cancel"}, 1),
    ([], {"cap_severity": "Extreme", "cap_urgency": "Past"}, 1),
    ([], {"cap_severity": "Moderate", "cap_certainty": "Unlikely"}, 1),
])
def test_source_assessment(categories: list[str], cap: dict, severity: int) -> None:
    assessed = assess(categories, **cap)
    assert assessed is not None and assessed.severity == severity


def test_no_assessment_without_one() -> None:
    assert assess(["earthquake"]) is None
    assert assess([], cap_severity="Unknown") is None


def test_cap_area_codes_win_over_a_city_the_text_names(tmp_path: Path) -> None:
    """NWS CAP-in-Atom names counties ("Jefferson") and says "Birmingham", a larger city in
    England; the entry's UGC zones say it is in the US. A MeteoAlarm Atom cancel (its
    ``cap:message_type``) of an orange warning fires nothing."""
    entries = (
        "<entry><id>urn:nws1</id><updated>2026-05-01T00:00:00Z</updated>"
        "<title>Flash Flood Warning issued May 1 by NWS</title>"
        "<summary>Flash flooding is ongoing in Birmingham. 3 people killed.</summary>"
        "<cap:event>Flash Flood Warning</cap:event><cap:status>Actual</cap:status>"
        "<cap:msgType>Alert</cap:msgType><cap:urgency>Immediate</cap:urgency>"
        "<cap:severity>Severe</cap:severity><cap:certainty>Observed</cap:certainty>"
        "<cap:areaDesc>Jefferson</cap:areaDesc>"
        "<cap:geocode><valueName>FIPS6</valueName><value>001073</value>"
        "<valueName>UGC</valueName><value>ALC073</value></cap:geocode></entry>"
        "<entry><id>urn:ma1</id><updated>2026-05-01T00:00:00Z</updated>"
        "<title>Orange Flood Warning - Example Province</title>"
        "<summary>Severe flooding expected in the Philippines province.</summary>"
        "<cap:geocode><valueName>EMMA_ID</valueName><value>DE140</value></cap:geocode>"
        "<cap:areaDesc>Example Province</cap:areaDesc><cap:event>flooding</cap:event>"
        "<cap:severity>Severe</cap:severity><cap:certainty>Likely</cap:certainty>"
        "<cap:urgency>Immediate</cap:urgency><cap:status>Actual</cap:status>"
        "<cap:message_type>Cancel</cap:message_type></entry>")
    path = tmp_path / "cap_atom.xml"
    path.write_text('<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" '
                    'xmlns:cap="urn:oasis:names:tc:emergency:cap:1.1"><title>Alerts</title>'
                    f"<id>urn:x</id><updated>2026-05-01T00:00:00Z</updated>{entries}</feed>")
    (_, nws), (_, cancel) = _verdicts(path)
    assert nws["classification"]["country"] == "US"
    assert "diaspora-disaster-welfare" not in nws["playbooks"]
    assert cancel["classification"]["country"] == "DE"
    assert cancel["classification"]["severity"] <= 1 and not cancel["playbooks"]
