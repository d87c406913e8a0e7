"""A partner site names the diasporas it serves (issue 21, point 6): countries (ISO 3166) and
regions of the diaspora map, checked where they are typed (registry CSV/YAML import, with every
problem of the file at once and its line), stored as codes (migration 0010, SQLite and
PostgreSQL), and used by the audience: an alert about a disaster or a homeland attack there
reaches the sites that serve that diaspora, once, saying why. Every site here is fictional."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from notify.helpers import notifier
from sqlalchemy import inspect, select, text

from notifiers.centre import RetryPolicy
from prevent.alerts.audience import resolve_audience
from prevent.contracts import Alert, AlertStatus, Evidence, Scope, utcnow
from prevent.partners import checks as registry_checks
from prevent.partners.registry import apply_registry, export_registry, parse_registry
from prevent.partners.site_diasporas import Places, concern, places_from_text, reason_text
from prevent.platform.config import REPO_ROOT, Settings
from prevent.platform.storage.db import Database, alembic_config
from prevent.platform.storage.tables import NoticeRow, Site
from prevent.platform.yamlsource import SourceError
from prevent.rules.playbooks import diaspora_versions as diaspora
from prevent.rules.playbooks.schema import Playbook

PLAYBOOKS = REPO_ROOT / "playbooks"
PLACES = places_from_text((PLAYBOOKS / "diaspora.yaml").read_text(encoding="utf-8"))


# ------------------------------------------------------------------ what officers may write


@pytest.mark.parametrize(("typed", "code"), [
    ("JM", "JM"), ("jm", "JM"), ("Jamaica", "JM"), (" haiti ", "HT"),
    ("IN-PB", "IN-PB"), ("in-kl", "IN-KL"), ("Punjab", "IN-PB"), ("kerala", "IN-KL"),
    ("ਪੰਜਾਬ", "IN-PB"), ("Jammu", "IN-JK"),
])
def test_countries_and_regions_are_read_as_their_codes(typed: str, code: str) -> None:
    assert PLACES.normalise(typed) == (code, None)


@pytest.mark.parametrize(("typed", "says"), [
    ("QQ", "unknown country code 'QQ': give an ISO 3166 alpha-2 code"),
    ("ZZ", "unknown country code 'ZZ'"),  # CLDR's "Unknown Region" is no country
    ("EU", "unknown country code 'EU'"),
    ("Narnia", "unknown country or region 'Narnia'"),
    ("punjabb", "(did you mean IN-PB?)"),
    ("IN-XX", "unknown country or region 'IN-XX'"),
])
def test_an_unknown_country_or_region_is_refused_in_words(typed: str, says: str) -> None:
    code, problem = PLACES.normalise(typed)
    assert code is None and problem is not None and says in problem, problem


def test_a_name_several_regions_share_asks_for_the_id() -> None:
    places = places_from_text("""version: 1
regions:
  - {id: XA-ONE, country: IN, names: [Sampleland, One]}
  - {id: XA-TWO, country: IN, names: [Sampleland, Two]}
""", 7)
    assert places.normalise("two") == ("XA-TWO", None)
    code, problem = places.normalise("Sampleland")
    assert code is None and "several regions" in problem and "XA-ONE, XA-TWO" in problem
    assert "version 7 of the diaspora map" in places.normalise("Nowhere")[1]


def test_labels_and_reasons_name_the_country_or_region() -> None:
    assert PLACES.label("JM") == "Jamaica (JM)" and PLACES.label("IN-PB") == "Punjab (IN-PB)"
    assert "not in the diaspora map" in PLACES.label("IN-GONE")
    assert reason_text(["JM"], PLACES) == "serves the diaspora of Jamaica"
    assert reason_text(["IN-KL", "IN"], PLACES) == "serves the diaspora of Kerala and India"
    assert PLACES.name("JM", "fr") == "Jamaïque"


# ------------------------------------------------------------------ the import

HEADER = "site_id,site_name,communities,municipality,diasporas,contact_id,contact_name,email,consent\n"
GOOD_CSV = HEADER + (
    "s-caribbean,Sample Caribbean Centre,black,Town,jm; Haiti,c-1,Ana,ana@example.org,yes\n"
    "s-punjabi,Sample Punjabi Hall,sikh,Town,Punjab;IN,,,,\n")
# Row 2: an unknown country code and a misspelt region; row 3: a bad community and an unknown
# region; row 4: an otherwise invalid row (no municipality) with an unknown country name.
BAD_CSV = HEADER + (
    "s-one,One,black,Town,QQ;punjabb,,,,\n"
    "s-two,Two,muslin,Town,IN-NOWHERE,,,,\n"
    "s-three,Three,sikh,,Atlantis,,,,\n")
BAD_YAML = """sites:
  - site_id: s-one
    name: One
    communities: [black]
    municipality: Town
    diasporas:
      - JM
      - QQ
  - site_id: s-two
    name: Two
    communities: []
    municipality: Town
    diasporas: Kerala; Narnia
"""


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def test_a_csv_import_stores_codes(tmp_path: Path) -> None:
    parsed = registry_checks.parse(_write(tmp_path, "sites.csv", GOOD_CSV), set(), PLAYBOOKS,
                                   places=PLACES)
    assert {s.site_id: s.diasporas for s in parsed.sites} == {
        "s-caribbean": ["JM", "HT"], "s-punjabi": ["IN-PB", "IN"]}


def test_a_csv_import_lists_every_unknown_diaspora_with_every_other_problem(tmp_path: Path) -> None:
    path = _write(tmp_path, "partners.csv", BAD_CSV)
    with pytest.raises(SourceError) as caught:
        registry_checks.parse(path, set(), PLAYBOOKS, source="partners.csv", places=PLACES)
    problems = caught.value.problems
    expected = [
        "partners.csv:2: site s-one: diasporas: unknown country code 'QQ'",
        "partners.csv:2: site s-one: diasporas: unknown country or region 'punjabb' (did you mean IN-PB?)",
        "partners.csv:3: site s-two: unknown community 'muslin'",
        "partners.csv:3: site s-two: diasporas: unknown country or region 'IN-NOWHERE'",
        "partners.csv:4: municipality:",
        "partners.csv:4: site s-three: diasporas: unknown country or region 'Atlantis'",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected), problems


def test_a_yaml_import_names_the_line_of_each_unknown_diaspora(tmp_path: Path) -> None:
    path = _write(tmp_path, "partners.yaml", BAD_YAML)
    with pytest.raises(SourceError) as caught:
        registry_checks.parse(path, set(), PLAYBOOKS, places=PLACES)
    problems = caught.value.problems
    assert any(p.startswith(f"{path}:8: site s-one: diasporas: unknown country code 'QQ'")
               for p in problems), problems
    assert any(p.startswith(f"{path}:13: site s-two: diasporas: unknown country or region 'Narnia'")
               for p in problems), problems
    assert any(p.startswith(f"{path}:11: sites.1.communities") for p in problems), problems
    assert not any("'JM'" in p or "Kerala" in p for p in problems)


def test_the_schema_refuses_an_overlong_entry_and_too_many(tmp_path: Path) -> None:
    many = ";".join(["JM"] * 51)
    path = _write(tmp_path, "long.csv", HEADER + f"s-x,X,black,Town,{'x' * 81},,,,\n"
                  f"s-y,Y,black,Town,{many},,,,\n")
    with pytest.raises(SourceError) as caught:
        parse_registry(path)
    problems = caught.value.problems
    assert any(p.startswith(f"{path}:2: diasporas.0:") for p in problems), problems
    assert any(p.startswith(f"{path}:3: diasporas:") for p in problems), problems


# ------------------------------------------------------------------ storage (migration 0010)


async def test_migration_0010_adds_the_column_to_existing_sites_and_back(db: Database) -> None:
    def to(revision: str, down: bool = False):
        def run(conn) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, revision)
        return run

    async with db.engine.begin() as conn:
        await conn.run_sync(to("0009", down=True))
        columns = await conn.run_sync(lambda c: [col["name"] for col in inspect(c).get_columns("sites")])
        assert "diasporas" not in columns
        await conn.execute(text(
            "INSERT INTO sites (site_id, name, kind, communities, address, municipality, notes) "
            "VALUES ('s-old', 'Old Sample Hall', 'community_centre', '[\"black\"]', '', 'Town', '')"))
    await db.upgrade()
    async with db.transaction() as session:
        old = await session.get(Site, "s-old")
        assert old is not None and old.diasporas == []
        old.diasporas = ["JM", "IN-PB"]
    async with db.transaction() as session:
        assert (await session.get(Site, "s-old")).diasporas == ["JM", "IN-PB"]
        exported = await export_registry(session)
    assert [s.diasporas for s in exported.sites] == [["JM", "IN-PB"]]


# ------------------------------------------------------------------ the audience

REGISTRY = """sites:
  - site_id: a-caribbean-centre
    name: Sample Caribbean Centre
    kind: community_centre
    communities: [hispanic]
    diasporas: [JM, HT]
    municipality: Town
    zone_id: z1
    contacts:
      - {contact_id: c-a, name: A, email: a@example.org, consent: true, language: fr}
  - site_id: b-sample-church
    name: Sample Church
    kind: place_of_worship
    communities: [christian]
    diasporas: [JM]
    municipality: Town
    contacts:
      - {contact_id: c-b, name: B, email: b@example.org, consent: true}
  - site_id: c-kerala-association
    name: Sample Kerala Association
    kind: cultural_centre
    communities: [tamil]
    diasporas: [IN-KL]
    municipality: Town
    contacts:
      - {contact_id: c-c, name: C, email: c@example.org, consent: true}
  - site_id: d-india-hall
    name: Sample India Hall
    kind: school
    communities: [tamil]
    diasporas: [IN]
    municipality: Town
    contacts:
      - {contact_id: d-d, name: D, email: d@example.org, consent: true}
  - site_id: e-israeli-centre
    name: Sample Israeli Centre
    kind: cultural_centre
    communities: [armenian]
    diasporas: [IL, FR]
    municipality: Town
    zone_id: z1
    contacts:
      - {contact_id: e-e, name: E, email: e@example.org, consent: true}
zones:
  - {zone_id: z1, name: Zone 1}
"""


def playbook(*, role: str = "targeted", patrol: bool = False, **audience: object) -> Playbook:
    return Playbook.model_validate({
        "id": "pb-test", "title": "t", "owner": "o",
        "match": {"communities": {"any": ["christian"], "role": role}},
        "response": {"notify": [{"channels": ["email"], **audience}],
                     **({"patrol": {"every_minutes": 60}} if patrol else {})}})


def make_alert(*, communities: tuple[str, ...], incident_type: str = "natural_disaster",
               country: str | None = None, rules: tuple[str, ...] = (),
               scope: Scope | None = None, status: AlertStatus = AlertStatus.PROPOSED) -> Alert:
    now = utcnow()
    return Alert(alert_id="alr_diaspora", cluster_id="cls_diaspora", incident_ids=("inc_d",),
                 playbook_id="pb-test", playbook_version=1, status=status, revision=1,
                 severity=3, communities=communities, incident_type=incident_type,
                 title="Hurricane makes landfall", country=country,
                 evidence=tuple(Evidence(rule=r, term="x") for r in rules),
                 scope=scope or Scope(), created_at=now, updated_at=now)


@pytest.fixture
async def audience_db(db: Database, tmp_path: Path) -> Database:
    async with db.transaction() as session:
        await diaspora.seed(session, PLAYBOOKS)  # the map in force names the regions
        await apply_registry(session, parse_registry(_write(tmp_path, "r.yaml", REGISTRY)))
    return db


async def plan_for(db: Database, alert: Alert, pb: Playbook):
    async with db.transaction() as session:
        return await resolve_audience(session, alert, pb)


async def test_a_disaster_reaches_the_sites_serving_that_diaspora_once(audience_db: Database) -> None:
    alert = make_alert(communities=("black", "christian"), country="JM", rules=("country:JM",))
    plan = await plan_for(audience_db, alert, playbook(communities=["$matched"]))
    # The church is in by its community and serves Jamaica too: one site, one notice.
    assert sorted(plan.sites) == ["a-caribbean-centre", "b-sample-church"]
    assert sorted((r.contact_id, r.channel) for r in plan.recipients) == [("c-a", "email"), ("c-b", "email")]
    assert dict(plan.reasons) == {"a-caribbean-centre": "serves the diaspora of Jamaica"}
    by_contact = {r.contact_id: r for r in plan.recipients}
    assert by_contact["c-a"].diasporas == ("JM",) and by_contact["c-b"].diasporas == ()
    assert by_contact["c-b"].reason == ""


async def test_a_region_and_its_country_reach_their_sites(audience_db: Database) -> None:
    alert = make_alert(communities=("christian", "hindu", "muslim"), country="IN",
                       rules=("region:IN-KL", "country:IN"))
    plan = await plan_for(audience_db, alert, playbook(communities=["$matched"]))
    assert sorted(plan.sites) == ["b-sample-church", "c-kerala-association", "d-india-hall"]
    assert dict(plan.reasons) == {"c-kerala-association": "serves the diaspora of Kerala",
                                  "d-india-hall": "serves the diaspora of India"}


async def test_a_homeland_attack_reaches_that_homelands_diaspora_with_patrols(
        audience_db: Database) -> None:
    alert = make_alert(communities=("jewish",), incident_type="armed_attack", country="IL",
                       rules=("homeland:IL", "casualties", "country:IL"))
    plan = await plan_for(audience_db, alert, playbook(patrol=True, communities=["$matched"]))
    assert plan.sites == ("e-israeli-centre",)
    assert dict(plan.reasons) == {"e-israeli-centre": "serves the diaspora of Israel"}
    assert [p.site_id for p in plan.patrols] == ["e-israeli-centre"]


@pytest.mark.parametrize(("alert", "pb"), [
    # An attack abroad on a community the report names concerns that community, not the
    # diaspora of the country it happened in (no homeland or region evidence).
    (make_alert(communities=("jewish",), incident_type="armed_attack", country="FR",
                rules=("community:jewish", "country:FR")), playbook(communities=["$matched"])),
    # A playbook for the communities at risk of backlash: the homeland is the victims' side.
    (make_alert(communities=("muslim",), incident_type="armed_attack", country="IL",
                rules=("homeland:IL",)), playbook(role="backlash", communities=["$matched"])),
    # A playbook that turns the diasporas off.
    (make_alert(communities=("black",), country="JM"),
     playbook(communities=["$matched"], diasporas=False)),
    # Fixed communities (not $matched): the playbook chose its sites itself.
    (make_alert(communities=("black",), country="JM"), playbook(communities=["muslim"])),
    # The audience's site kinds still apply.
    (make_alert(communities=("black",), country="JM"),
     playbook(communities=["$matched"], site_kinds=["school"])),
    # A site the inspector left out stays out.
    (make_alert(communities=("black",), country="JM",
                scope=Scope(excluded_sites=("a-caribbean-centre", "b-sample-church"))),
     playbook(communities=["$matched"])),
])
async def test_no_diaspora_site_where_the_alert_or_playbook_does_not_call_for_it(
        audience_db: Database, alert: Alert, pb: Playbook) -> None:
    plan = await plan_for(audience_db, alert, pb)
    assert not plan.reasons and not any(r.diasporas for r in plan.recipients), plan
    assert "a-caribbean-centre" not in plan.sites and "e-israeli-centre" not in plan.sites


def test_what_an_alert_concerns() -> None:
    assert concern(make_alert(communities=("black",), country="JM")).countries == {"JM"}
    regional = concern(make_alert(communities=("christian",), incident_type="armed_attack",
                                  country="NG", rules=("region:NG-MIDDLE-BELT",)))
    assert regional.regions == {"NG-MIDDLE-BELT"} and regional.countries == {"NG"}
    assert not concern(make_alert(communities=("jewish",), incident_type="armed_attack",
                                  country="FR"))
    assert not concern(make_alert(communities=("black",)))  # no country: nothing


async def test_the_notice_says_why_in_the_contacts_language(audience_db: Database,
                                                             settings: Settings) -> None:
    alert = make_alert(communities=("black", "christian"), country="JM", rules=("country:JM",),
                       status=AlertStatus.CONFIRMED)
    n = notifier(audience_db, settings, retry=RetryPolicy(max_attempts=1, base_delay=0.01, max_delay=0.01))
    async with audience_db.transaction() as session:
        await n._plan(session, alert, playbook(communities=["$matched"], template="welfare_outreach"))
        rows = {r.contact_id: r for r in (await session.execute(select(NoticeRow))).scalars()}
    assert sorted(rows) == ["c-a", "c-b"]  # each site once
    assert ("Sample Caribbean Centre reçoit cet avis parce que ce site sert la diaspora : Jamaïque."
            in rows["c-a"].body), rows["c-a"].body
    assert "diaspora" not in rows["c-b"].body  # in by its community: nothing to explain


def test_places_without_a_map_know_every_country_and_no_region() -> None:
    empty = Places()
    assert empty.normalise("JM") == ("JM", None) and empty.normalise("IN-PB")[0] is None
