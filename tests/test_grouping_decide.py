"""The pure grouping decision (``prevent.rules.grouping.decide``), without a database: plain
reports, classifications and candidate clusters in, the cluster chosen (and its values) out.

A table of cases asserts the exact cluster each report joins, or that it makes its own;
the tests below it check the values a decision carries for the database to write."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from prevent.classification import Classification
from prevent.contracts import FeedKind, GlobalIncident, stable_id
from prevent.rules.grouping import (
    MAX_CANDIDATES,
    PLACE_TYPE_WINDOW,
    TITLE_WINDOW,
    Cluster,
    Decision,
    decide,
    title_tokens,
)

T0 = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 6, 20, 9, 30, tzinfo=UTC)  # a new cluster's created_at
NEW = "new"  # expected: the report makes its own cluster
MINUTE = timedelta(minutes=1)

KANO = "Gunmen kill 3 at mosque in Kano, Nigeria"
KADUNA_FR = "Nigeria : des hommes armés tuent 12 fidèles dans une église de l'État de Kaduna"
KADUNA_AR = "مقتل 12 مصليا في هجوم مسلح على كنيسة في ولاية كادونا بنيجيريا"
KADUNA_ES = "Hombres armados asesinan a 12 fieles en una iglesia de Nigeria"
# Ten distinct words each (the overlap coefficient divides by the shorter title: 10).
TEN = "alpha bravo charlie delta echo foxtrot golf hotel india juliet"
THREE_OF_TEN = "alpha bravo charlie kilo lima mike november oscar papa quebec"
TWO_OF_TEN = "alpha bravo kilo lima mike november oscar papa quebec romeo"


def report(title: str, at: timedelta = timedelta(0), name: str = "report") -> GlobalIncident:
    published = T0 + at
    return GlobalIncident(incident_id=stable_id("inc", name, title), feed_id="feed", kind=FeedKind.RSS,
                          title=title, summary="", published=published, first_seen=published,
                          content_hash=stable_id("h", title))


def classified(incident_type: str = "armed_attack", country: str | None = "NG",
               communities: tuple[str, ...] = ("muslim",), severity: int = 3,
               casualties: dict[str, int | None] | None = None) -> Classification:
    return Classification(communities=communities, incident_type=incident_type, severity=severity,
                          casualties=casualties or {}, country=country)


def cluster(cluster_id: str, title: str, first: timedelta = timedelta(0), last: timedelta | None = None, *,
            incident_type: str = "armed_attack", country: str | None = "NG",
            communities: tuple[str, ...] = ("muslim",), severity: int = 3, count: int = 1) -> Cluster:
    """A stored cluster as ``Grouper.load`` reads it (lists sorted, as written)."""
    return Cluster(cluster_id=cluster_id, created_at=T0 + first, first_published_at=T0 + first,
                   last_published_at=T0 + (first if last is None else last), title=title,
                   communities=sorted(communities), incident_type=incident_type, country=country,
                   tokens=sorted(title_tokens(title)), max_severity=severity, report_count=count)


@dataclass
class Case:
    """A report (``title`` at ``at``, classified ``c``) against ``clusters`` (each a holder of
    one of its keys once, unless ``holders`` says otherwise): ``expected``, the id of the
    cluster it joins, or ``NEW``."""

    clusters: list[Cluster]
    title: str
    at: timedelta
    c: Classification
    expected: str
    holders: list[str] | None = None
    extra: dict[str, object] = field(default_factory=dict)


H = timedelta(hours=1)
CASES = {
    # Same event, reported again.
    "same title from another feed joins": Case(
        [cluster("a", KANO)], KANO, 5 * MINUTE, classified(), "a"),
    "same event in other words joins": Case(
        [cluster("a", KANO)], "Three killed as gunmen attack Kano mosque during prayers", H,
        classified(), "a"),
    "a rising casualty figure is the same event (numbers are no words)": Case(
        [cluster("a", "Gunmen kill 3 worshippers at Kano mosque")],
        "Gunmen kill 14 worshippers at Kano mosque", 5 * H,
        classified(severity=4, casualties={"killed": 14}), "a"),
    "a death toll report joins its event": Case(
        [cluster("a", KANO)], "Death toll in Kano mosque attack rises to 14", 2 * H,
        classified(severity=4, casualties={"killed": 14}), "a"),
    # Different events stay apart.
    "same words, another country: separate": Case(
        [cluster("a", KANO, country="PK")], KANO, H, classified(), NEW),
    "same words, another community: separate": Case(
        [cluster("a", KANO, communities=("jewish",))], KANO, H, classified(), NEW),
    "one shared community is enough": Case(
        [cluster("a", KANO, communities=("christian", "muslim"))], KANO, H,
        classified(communities=("muslim", "hindu")), "a"),
    "a cluster without a country is of any": Case(
        [cluster("a", KANO, country=None)], KANO, H, classified(), "a"),
    "a report without a country joins by its words": Case(
        [cluster("a", KANO)], KANO, H, classified(country=None), "a"),
    "a cluster without a community is of any": Case(
        [cluster("a", KANO, communities=())], KANO, H, classified(), "a"),
    "unrelated words, same country, another type family: separate": Case(
        [cluster("a", KANO, incident_type="vandalism")], "Synagogue set on fire in Melbourne arson attack",
        H, classified(incident_type="threat"), NEW),
    # Same country and type family, no shared words: other languages of one event.
    "French then Arabic report of one attack joins": Case(
        [cluster("a", KADUNA_FR, communities=("christian",))], KADUNA_AR, 3 * H,
        classified(communities=("christian",)), "a"),
    "French then Spanish report (one shared word) joins": Case(
        [cluster("a", KADUNA_FR, communities=("christian",))], KADUNA_ES, 6 * H,
        classified(communities=("christian",)), "a"),
    "arson and an armed attack are one family": Case(
        [cluster("a", KADUNA_FR, incident_type="arson")], KADUNA_AR, 3 * H, classified(), "a"),
    "another type family in another language: separate": Case(
        [cluster("a", KADUNA_FR, incident_type="vandalism")], KADUNA_AR, 3 * H, classified(), NEW),
    "same shape, no words, exactly the shorter window apart: joins": Case(
        [cluster("a", KADUNA_FR)], KADUNA_AR, PLACE_TYPE_WINDOW, classified(), "a"),
    "same shape, no words, a minute past the shorter window: separate": Case(
        [cluster("a", KADUNA_FR)], KADUNA_AR, PLACE_TYPE_WINDOW + MINUTE, classified(), NEW),
    "same shape, no words, a minute past the shorter window before the cluster: separate": Case(
        [cluster("a", KADUNA_FR, PLACE_TYPE_WINDOW + MINUTE)], KADUNA_AR, timedelta(0), classified(), NEW),
    "no country on the cluster: no shape to share": Case(
        [cluster("a", KADUNA_FR, country=None)], KADUNA_AR, H, classified(), NEW),
    # The time window of title matches.
    "same words exactly the window apart: joins": Case(
        [cluster("a", KANO)], KANO, TITLE_WINDOW, classified(), "a"),
    "same words a minute past the window: separate": Case(
        [cluster("a", KANO)], KANO, TITLE_WINDOW + MINUTE, classified(), NEW),
    "the window counts from the cluster's latest report": Case(
        [cluster("a", KANO, timedelta(0), 60 * H)], KANO, 60 * H + TITLE_WINDOW, classified(), "a"),
    "an older report joins within the window before the cluster's first": Case(
        [cluster("a", KANO, TITLE_WINDOW)], KANO, timedelta(0), classified(), "a"),
    "an older report a minute before the window: separate": Case(
        [cluster("a", KANO, TITLE_WINDOW + MINUTE)], KANO, timedelta(0), classified(), NEW),
    # The similarity threshold (no country: no shape to fall back on).
    "three words of ten, at the threshold: joins": Case(
        [cluster("a", TEN, country=None)], THREE_OF_TEN, H, classified(country=None), "a"),
    "two words of ten, under the threshold: separate": Case(
        [cluster("a", TEN, country=None)], TWO_OF_TEN, H, classified(country=None), NEW),
    "similarity divides by the shorter title": Case(
        [cluster("a", TEN, country=None)], "alpha bravo kilo lima mike", H, classified(country=None), "a"),
    # Not grouped at all.
    "no incident: its own cluster, whatever matches": Case(
        [cluster("a", KANO)], KANO, H, classified(incident_type="none"), NEW),
    "no community: its own cluster, whatever matches": Case(
        [cluster("a", KANO)], KANO, H, classified(communities=()), NEW),
    "a loaded cluster that holds none of its keys is no candidate": Case(
        [cluster("a", KANO)], KANO, H, classified(), NEW, holders=[]),
    # Choosing among several.
    "more shared words win": Case(
        [cluster("a", "Kano mosque market fire school bridge river"), cluster("b", KANO)],
        "Gunmen kill three at Kano mosque, Nigeria", H, classified(), "b"),
    "a title match beats a shape match": Case(
        [cluster("a", KADUNA_FR, count=9), cluster("b", KADUNA_AR)], KADUNA_AR, H, classified(), "b"),
    "equal words: the larger cluster": Case(
        [cluster("a", KANO, count=2), cluster("b", KANO, count=5)], KANO, H, classified(), "b"),
    "equal words and size: the lowest id": Case(
        [cluster("b", KANO), cluster("a", KANO)], KANO, H, classified(), "a", holders=["b", "a"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_report_joins_exactly_this_cluster(case: Case) -> None:
    incident = report(case.title, case.at)
    clusters = {row.cluster_id: row for row in case.clusters}
    before = {cluster_id: row.values() for cluster_id, row in clusters.items()}
    holders = list(clusters) if case.holders is None else case.holders

    decision = decide(incident, case.c, clusters, holders, now=NOW)

    expected = stable_id("clu", incident.incident_id) if case.expected == NEW else case.expected
    assert decision.cluster_id == expected
    assert decision.new == (case.expected == NEW and decision.cluster is not None)
    # Pure: the candidates as given, unchanged.
    assert {cluster_id: row.values() for cluster_id, row in clusters.items()} == before


def test_a_new_cluster_carries_every_value_to_write() -> None:
    incident = report("Gunmen kill 3 at mosque in Kano, Nigeria", 2 * H)
    c = classified(communities=("muslim", "christian"), severity=4)
    decision = decide(incident, c, {}, (), now=NOW)
    own = stable_id("clu", incident.incident_id)
    assert decision.cluster_id == own and decision.new and decision.index
    assert decision.cluster is not None
    assert decision.cluster.values() == {
        "cluster_id": own, "created_at": NOW, "first_published_at": T0 + 2 * H,
        "last_published_at": T0 + 2 * H, "title": incident.title,
        "communities": ["muslim", "christian"], "incident_type": "armed_attack", "country": "NG",
        "tokens": ["gunmen", "kano", "kill", "mosque", "nigeria"], "max_severity": 4, "report_count": 1}


def test_joining_returns_the_cluster_grown_and_leaves_the_loaded_one_as_it_was() -> None:
    row = cluster("a", KANO, H, 3 * H, incident_type="none", country=None, severity=2, count=4)
    before = row.values()
    incident = report("Death toll in Kano mosque attack rises to 14", timedelta(0))
    c = classified(communities=("muslim", "christian"), severity=4, casualties={"killed": 14})
    decision = decide(incident, c, {"a": row}, ["a"], now=NOW)
    assert decision == Decision("a", decision.cluster, new=False, index=True)
    assert decision.cluster is not None and decision.cluster is not row
    assert decision.cluster.values() == before | {
        "first_published_at": T0, "communities": ["christian", "muslim"],
        "tokens": sorted(title_tokens(KANO) | title_tokens(incident.title)),
        "incident_type": "armed_attack", "country": "NG", "max_severity": 4, "report_count": 5}
    assert decision.cluster.token_set == frozenset(decision.cluster.tokens)
    assert row.values() == before


def test_a_joined_cluster_keeps_its_type_country_and_worst_severity() -> None:
    row = cluster("a", KANO, incident_type="bombing", country="NG", severity=5)
    decision = decide(report(KANO, H), classified(incident_type="armed_attack", severity=2),
                      {"a": row}, ["a"], now=NOW)
    assert decision.cluster is not None
    assert (decision.cluster.incident_type, decision.cluster.country, decision.cluster.max_severity,
            decision.cluster.last_published_at) == ("bombing", "NG", 5, T0 + H)


def test_an_updated_report_stays_where_its_earlier_version_is() -> None:
    """Whatever it matches now: a cluster of another country, a better one, or none."""
    earlier = cluster("e", "Unrelated words entirely", country="PK", count=1)
    better = cluster("b", KANO, count=9)
    decision = decide(report(KANO, H), classified(), {"e": earlier, "b": better}, ["b"],
                      now=NOW, earlier="e")
    assert decision.cluster_id == "e" and not decision.new and not decision.index
    assert decision.cluster is not None and decision.cluster.report_count == 2
    # An earlier version's cluster without a row (its report was not grouped): nothing to write.
    assert decide(report(KANO, H), classified(), {"b": better}, ["b"], now=NOW, earlier="clu_x") == \
        Decision("clu_x")


def test_a_report_not_grouped_writes_no_cluster() -> None:
    incident = report(KANO, H)
    assert decide(incident, classified(incident_type="none"), {"a": cluster("a", KANO)}, ["a"],
                  now=NOW) == Decision(stable_id("clu", incident.incident_id))


def test_the_cap_keeps_the_clusters_sharing_most_keys_after_eligibility() -> None:
    """More than ``MAX_CANDIDATES`` eligible clusters: those sharing the most keys are tried,
    so one sharing fewer is left out even though it would match; clusters of other countries
    never take a place."""
    shape_only = cluster("z", KADUNA_FR)  # would join by shape (same country and family)
    # Eligible (no country), two words shared each, under the threshold: no match.
    crowd = [cluster(f"c{n:02}", f"Nigeria Kaduna w{n}a w{n}b w{n}c w{n}d w{n}e w{n}f", country=None)
             for n in range(MAX_CANDIDATES)]
    other_country = [cluster(f"o{n:02}", KADUNA_AR, country="PK") for n in range(2 * MAX_CANDIDATES)]
    incident = report(KADUNA_AR + " Nigeria Kaduna", H)
    clusters = {row.cluster_id: row for row in [shape_only, *crowd, *other_country]}
    holders = ["z"] + [row.cluster_id for row in crowd for _ in range(2)] + \
        [row.cluster_id for row in other_country for _ in range(5)]

    crowded = decide(incident, classified(), clusters, holders, now=NOW)
    assert crowded.cluster_id == stable_id("clu", incident.incident_id) and crowded.new

    # With one place free (one crowding cluster fewer), the shape match is tried and joined.
    holders.remove("c00")
    holders.remove("c00")
    assert decide(incident, classified(), clusters, holders, now=NOW).cluster_id == "z"


def test_clusters_begun_after_the_window_take_no_place_under_the_cap() -> None:
    """Clusters first reported more than the window after the report cannot be of its event
    (their words would match, their time not): they never crowd out one that can."""
    own = cluster("a", KANO, count=1)
    later = [cluster(f"l{n:02}", KANO, TITLE_WINDOW + MINUTE) for n in range(2 * MAX_CANDIDATES)]
    clusters = {row.cluster_id: row for row in [own, *later]}
    holders = ["a"] + [row.cluster_id for row in later for _ in range(3)]
    assert decide(report(KANO, timedelta(0)), classified(), clusters, holders, now=NOW).cluster_id == "a"
