"""The rules stage over a real database: grouping, one alert per cluster and playbook,
severity raised by later reports, idempotent on redelivery."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from prevent.classification import Classifier
from prevent.contracts import AlertStatus, GlobalIncident, alert_id_for, stable_id
from prevent.platform.storage.tables import AlertRow, AuditRow, ClusterRow, OutboxRow
from prevent.rules.playbooks.evaluate import CompiledSet
from prevent.rules.playbooks.loader import load_directory
from prevent.rules.stage import process_incident

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


async def process(db, engine, incident: GlobalIncident):
    classifier, playbooks = engine
    async with db.transaction() as session:
        return await process_incident(session, incident, classifier, playbooks,
                                      now=incident.published + timedelta(minutes=1))


async def count(db, model, *where) -> int:
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


def test_title_words_fold_accents_and_case_and_drop_numbers_and_stopwords() -> None:
    from prevent.rules.grouping import title_tokens

    assert title_tokens("Église Saint-Denis ATTAQUÉE à Paris") == {"eglise", "saint", "denis", "attaquee",
                                                                "paris"}
    assert title_tokens("Eglise Saint-Denis attaquee a Paris (#4021)") == title_tokens(
        "Église Saint-Denis ATTAQUÉE à Paris")
    assert title_tokens("Breaking: 3 killed in the attack on a mosque") == {"killed", "attack", "mosque"}
    # Every script: Arabic with harakat and letter variants, Hindi with its vowel signs.
    assert title_tokens("هجومٌ على مسجدٍ في كابول") == title_tokens("هجوم علي مسجد في كابول")
    assert "मस्जिद" in title_tokens("मस्जिद पर हमला, ३ की मौत")


def test_a_report_joins_its_event_however_many_other_communities_clusters_share_its_words() -> None:
    """The cap on candidates applies after eligibility: more than ``MAX_CANDIDATES`` clusters
    of another community sharing more words with a report do not crowd out its own event."""
    from prevent.classification import Classification
    from prevent.rules.grouping import MAX_CANDIDATES, Grouper

    def classified(community: str, country: str) -> Classification:
        return Classification(communities=(community,), incident_type="armed_attack", severity=3,
                              casualties={}, country=country)

    grouper = Grouper()
    mosque = report("ap", "Mosque in Kano attacked by gunmen", 0)
    own = grouper.assign(mosque, classified("muslim", "NG"))
    countries = ["AR", "AU", "AT", "BE", "BR", "CL", "CO", "DK", "EG", "FI", "FR", "DE", "GR", "HU",
                 "IN", "IE", "IL", "IT", "JP", "KE", "MX", "NL", "NZ", "NO", "PE"]
    assert len(countries) > MAX_CANDIDATES
    others = {grouper.assign(report("ap", f"Gunmen attack worshippers, killed at prayers, synagogue {place}",
                                    i + 1), classified("jewish", place))
              for i, place in enumerate(countries)}
    assert len(others) == len(countries) and own not in others  # none joined another

    follow_up = report("reuters", "Gunmen attack worshippers at prayers in Kano mosque, killed", 30)
    assert grouper.assign(follow_up, classified("muslim", "NG")) == own


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


async def test_one_batch_does_what_one_by_one_does(db, engine) -> None:
    """A burst in one batch: one cluster, one alert carrying every report, its severity
    raised, the events of the alert staged in the order they happened."""
    from prevent.rules.stage import process_batch

    classifier, playbooks = engine
    burst = [report(feed, title, i * 7) for i, (feed, title) in enumerate(REPORTS)]
    burst.append(report("reuters", "Death toll in Kano mosque attack rises to 14", 120,
                        "At least 14 worshippers were killed when gunmen attacked a mosque in Kano."))
    async with db.transaction() as session:
        outcomes = await process_batch(session, [*burst, burst[0]], classifier, playbooks,
                                       now=NOW + timedelta(hours=3))
    assert outcomes[-1].already_processed and not any(o.already_processed for o in outcomes[:-1])
    assert len({o.cluster_id for o in outcomes[:-1]}) == 1
    assert await count(db, AlertRow) == 1 and await count(db, ClusterRow) == 1
    async with db.transaction() as session:
        row = (await session.execute(select(AlertRow))).scalar_one()
        events = (await session.execute(select(OutboxRow.event_id).where(
            OutboxRow.topic == "prevent.alerts.v1").order_by(OutboxRow.seq))).scalars().all()
    assert row.revision == 2 and row.severity == 4
    assert row.payload["incident_ids"] == [i.incident_id for i in burst]
    assert events == [f"{row.alert_id}:1", f"{row.alert_id}:2"]
    async with db.transaction() as session:  # redelivered: nothing changes
        again = await process_batch(session, burst, classifier, playbooks, now=NOW + timedelta(hours=4))
    assert all(o.already_processed for o in again)
    assert await count(db, OutboxRow) == len(events) + await count(db, AuditRow)


async def test_a_silence_is_read_once_per_batch_and_applies_to_it(db, engine, caplog) -> None:
    from prevent.platform.storage.tables import SuppressedMatch
    from prevent.rules import suppression
    from prevent.rules.stage import process_batch, subject_of
    from prevent.users import Principal, Role

    classifier, playbooks = engine
    async with db.transaction() as session:
        silence = await suppression.create_silence(
            session, Principal("insp", Role.DUTY_INSPECTOR),
            suppression.SilenceIn(matchers=suppression.Matchers(keyword="Kano"), starts_at=NOW,
                                  ends_at=NOW + timedelta(days=1), comment="known hoax"), now=NOW)
    burst = [report(feed, title, i) for i, (feed, title) in enumerate(REPORTS[:3])]
    caplog.set_level("INFO", logger="prevent.rules.suppression")
    async with db.transaction() as session:
        outcomes = await process_batch(session, burst, classifier, playbooks, now=NOW + timedelta(hours=1))
    assert all(o.alerts == () for o in outcomes)
    logged = [r.getMessage() for r in caplog.records if "not raised" in r.getMessage()]
    assert await count(db, AlertRow) == 0
    matching = list(playbooks.matching(subject_of(burst[0], outcomes[0].classification),
                                       NOW + timedelta(hours=1)))
    assert matching and await count(db, SuppressedMatch) == 3 * len(matching)
    # The decision is audited (and published) once per would-be alert, not once per report.
    assert await count(db, AuditRow, AuditRow.action == "alert.silenced") == len(matching)
    assert await count(db, OutboxRow, OutboxRow.topic == "prevent.audit.v1") == len(matching) + 1
    would_be = [alert_id_for(outcomes[0].cluster_id, cp.playbook.id) for cp in matching]
    # logged once per would-be alert in the batch, not once per report
    assert sorted(logged) == sorted(f"alert {a} not raised: silenced by {silence.silence_id}"
                                    for a in would_be)
    async with db.transaction() as session:
        payloads = {(m.alert_id, m.incident_id): m.payload for m in (await session.execute(
            select(SuppressedMatch))).scalars()}
    # The would-be alert is kept on the match that recorded it first, not copied onto each.
    assert {(a, i): p and p["title"] for (a, i), p in payloads.items()} == {
        (a, r.incident_id): r.title if n == 0 else None for a in would_be for n, r in enumerate(burst)}

    # The next batch of the same event: its matches are recorded, nothing is audited again;
    # redelivered, it records nothing new.
    later = [report(feed, title, 10 + i) for i, (feed, title) in enumerate(REPORTS[3:6])]
    for _ in range(2):
        async with db.transaction() as session:
            await process_batch(session, later, classifier, playbooks, now=NOW + timedelta(hours=2))
        assert await count(db, SuppressedMatch) == 6 * len(matching)
        assert await count(db, AuditRow, AuditRow.action == "alert.silenced") == len(matching)
        assert await count(db, OutboxRow, OutboxRow.topic == "prevent.audit.v1") == len(matching) + 1


async def test_a_report_attached_after_a_decision_keeps_the_decision(db, engine) -> None:
    from prevent.alerts import states as alerts

    first = await process(db, engine, report("reuters", REPORTS[0][1], 0))
    alert = first.alerts[0]
    async with db.transaction() as session:
        decided = await alerts.decide(session, alert.alert_id, alerts.Decision(
            action="confirm" if alert.status is AlertStatus.PROPOSED else "close", actor="insp",
            expected_revision=alert.revision))
    later = await process(db, engine, report("ap", REPORTS[1][1], 7))
    assert later.cluster_id == first.cluster_id and later.alerts == ()
    async with db.transaction() as session:
        now = await alerts.get(session, alert.alert_id)
    assert now.status is decided.status and now.revision == decided.revision
    assert now.incident_ids == (*alert.incident_ids, later.incident_id)


async def test_an_alert_names_its_first_reports_and_its_page_counts_them_all(db, engine) -> None:
    """A major event has thousands of reports: the alert event stays small (it names the
    first ``MAX_LISTED_REPORTS``), the alert's page counts every report of the cluster."""
    from prevent.alerts import lifecycle
    from prevent.alerts.states import MAX_LISTED_REPORTS
    from prevent.rules.playbooks import store
    from prevent.rules.stage import process_batch

    classifier, _ = engine
    async with db.transaction() as session:  # the alert's page previews its stored playbook
        await store.apply_directory(session, REPO / "playbooks", author="test")
        playbooks = CompiledSet(await store.current_set(session))
    total = MAX_LISTED_REPORTS + 5
    burst = [report(f"wire-{i}", REPORTS[0][1], i % 30) for i in range(total)]
    async with db.transaction() as session:
        await process_batch(session, burst[:60], classifier, playbooks, now=NOW + timedelta(hours=1))
    async with db.transaction() as session:
        await process_batch(session, burst[60:], classifier, playbooks, now=NOW + timedelta(hours=1))
    async with db.transaction() as session:
        row = (await session.execute(select(AlertRow))).scalar_one()
        view = await lifecycle.detail(session, row.alert_id)
    assert row.payload["incident_ids"] == [i.incident_id for i in burst[:MAX_LISTED_REPORTS]]
    assert view["report_count"] == total
    assert len(view["incidents"]) == total  # under the page's limit: every report listed
    assert {i["incident_id"] for i in view["incidents"]} == {i.incident_id for i in burst}


async def test_two_replicas_at_once_never_decide_from_the_same_state(db, engine, monkeypatch) -> None:
    """Two rules replicas each take one report of the same event at the same moment. Each waits
    (up to 1 s) after reading the grouping state for the other to have read it too: without the
    batch lock both would read an empty state and make two clusters and two alerts; with it the
    second reads after the first committed and joins its cluster."""
    from prevent.rules import grouping

    arrived: list[asyncio.Event] = [asyncio.Event(), asyncio.Event()]
    load = grouping.Grouper.load.__func__

    async def load_then_wait(cls, session, reports, earlier):
        grouper = await load(cls, session, reports, earlier)
        me = 0 if not arrived[0].is_set() else 1
        arrived[me].set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived[1 - me].wait(), 1.0)
        return grouper

    monkeypatch.setattr(grouping.Grouper, "load", classmethod(load_then_wait))
    first, second = (report(feed, title, i) for i, (feed, title) in enumerate(REPORTS[:2]))
    outcomes = await asyncio.gather(process(db, engine, first), process(db, engine, second))
    assert outcomes[0].cluster_id == outcomes[1].cluster_id
    assert await count(db, ClusterRow) == 1
    assert await count(db, AlertRow) == 1
