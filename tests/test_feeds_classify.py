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
