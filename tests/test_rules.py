"""The rules stage over a real database: grouping, one alert per cluster and playbook,
severity raised by later reports, idempotent on redelivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from prevent.classification import Classifier
from prevent.contracts import AlertStatus, GlobalIncident, stable_id
from prevent.playbooks.evaluate import CompiledSet
from prevent.playbooks.loader import load_directory
from prevent.rules import process_incident
from prevent.storage.tables import AlertRow, AuditRow, ClusterRow, OutboxRow

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)

REPORTS = [
    ("reuters", "Gunmen kill 3 at mosque in Kano, Nigeria"),
    ("ap", "Three killed as gunmen attack Kano mosque during prayers"),
    ("afp", "Nigeria: gunmen open fire at mosque in Kano, three dead"),
    ("bbc", "Kano mosque attack: gunmen kill worshippers at Friday prayers"),
    ("aljazeera", "Gunmen attack mosque in northern Nigeria's Kano, killing three"),
    ("guardian", "Worshippers killed in gun attack on Kano mosque"),
    ("cnn", "Gunmen storm mosque in Kano, Nigeria; 3 worshippers killed"),
    ("dw", "Nigeria: three dead after gunmen attack mosque in Kano"),
    ("france24", "Gunmen kill three worshippers in Kano mosque attack"),
    ("punch", "Three worshippers killed as gunmen attack mosque in Kano"),
]


@pytest.fixture(scope="module")
def engine() -> tuple[Classifier, CompiledSet]:
    return Classifier.from_dir(REPO / "playbooks"), CompiledSet(load_directory(REPO / "playbooks"))


def report(feed: str, title: str, minutes: int, summary: str = "") -> GlobalIncident:
    published = NOW + timedelta(minutes=minutes)
    return GlobalIncident(incident_id=stable_id("inc", feed, title), feed_id=feed, kind="rss",
                          title=title, summary=summary, published=published, first_seen=published,
                          content_hash=stable_id("h", title, summary))


async def process(db, engine, incident: GlobalIncident):  # noqa: ANN001, ANN201
    classifier, playbooks = engine
    async with db.transaction() as session:
        return await process_incident(session, incident, classifier, playbooks,
                                      now=incident.published + timedelta(minutes=1))


async def count(db, model, *where) -> int:  # noqa: ANN001
    async with db.transaction() as session:
        return (await session.execute(select(func.count()).select_from(model).where(*where))).scalar()


async def test_ten_reports_of_one_event_make_one_alert_that_grows(db, engine) -> None:
    outcomes = [await process(db, engine, report(feed, title, i * 7))
                for i, (feed, title) in enumerate(REPORTS)]
    clusters = {o.cluster_id for o in outcomes}
    assert len(clusters) == 1, [o.classification.to_json()["communities"] for o in outcomes]
    assert await count(db, AlertRow) == 1
    assert await count(db, ClusterRow) == 1

    worse = await process(db, engine, report(
        "reuters", "Death toll in Kano mosque attack rises to 14", 120,
        "At least 14 worshippers were killed when gunmen attacked a mosque in Kano."))
    assert worse.cluster_id in clusters
    assert len(worse.alerts) == 1
    raised = worse.alerts[0]
    assert raised.severity == 4 and raised.previous_severity == 3
    assert raised.revision == 2
    assert await count(db, AlertRow) == 1
    assert await count(db, AuditRow, AuditRow.action == "alert.severity_raised") == 1


async def test_unrelated_events_stay_apart(db, engine) -> None:
    a = await process(db, engine, report("ap", "Gunmen kill 3 at mosque in Kano, Nigeria", 0))
    b = await process(db, engine, report("ap", "Synagogue set on fire in Melbourne arson attack", 5,
                                         "Two people were injured in the blaze."))
    c = await process(db, engine, report("ap", "Temple Run update adds new levels", 6))
    assert len({a.cluster_id, b.cluster_id, c.cluster_id}) == 3
    assert await count(db, AlertRow) == 2
    assert c.alerts == ()


async def test_redelivered_incident_changes_nothing(db, engine) -> None:
    first = report("ap", "Gunmen kill 12 worshippers at mosque in Kano", 0)
    once = await process(db, engine, first)
    again = await process(db, engine, first)
    assert once.alerts and once.alerts[0].status is AlertStatus.CONFIRMED  # severity 4: auto
    assert again.already_processed and again.alerts == ()
    assert await count(db, AlertRow) == 1
    assert await count(db, OutboxRow, OutboxRow.topic == "prevent.alerts.v1") == 1


async def test_a_partner_report_reaches_the_inspector_queue(db, engine) -> None:
    from prevent.contracts import FeedKind

    published = NOW
    incident = GlobalIncident(
        incident_id=stable_id("inc", "partner"), feed_id="partner:site-1", kind=FeedKind.PARTNER_REPORT,
        title="URGENT: Partner report from Riverside Islamic Centre (sample)",
        summary="A man has been shouting at worshippers outside our entrance every evening.",
        published=published, first_seen=published, categories=("partner_report", "urgent", "muslim"),
        content_hash="h")
    outcome = await process(db, engine, incident)
    assert [(a.playbook_id, a.status) for a in outcome.alerts] == [("partner-report", AlertStatus.PROPOSED)]
    assert outcome.alerts[0].communities == ("muslim",) and outcome.alerts[0].severity == 2
