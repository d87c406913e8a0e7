"""Registry import (all or nothing, every bad row with its line) and audience resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from lifecycle.support import make_alert
from prevent.alerts.audience import resolve_audience
from prevent.contracts import Scope
from prevent.partners.registry import (
    apply_registry,
    export_registry,
    known_zone_ids,
    parse_registry,
    registry_yaml,
)
from prevent.platform.storage.tables import Contact, RosterEntry, Site
from prevent.platform.yamlsource import SourceError
from prevent.rules.playbooks.schema import Playbook

GOOD_CSV = """site_id,site_name,kind,communities,municipality,zone_id,contact_id,contact_name,email,phone,\
language,channels,consent
s-mosque-a,Mosque A,place_of_worship,muslim,Riverside,zone-north,c-a1,Ann,a1@example.org,,en,email,yes
s-mosque-a,Mosque A,place_of_worship,muslim,Riverside,zone-north,c-a2,Abe,,+1 555 0101,fr,sms,yes
s-centre-b,Centre B,community_centre,muslim;jewish,Hillview,zone-south,c-b1,Bea,b1@example.org,,en,\
email;sms,no
s-shul-c,Shul C,place_of_worship,jewish,Hillview,,c-c1,Cal,c1@example.org,,fr,email,yes
"""
BAD_CSV = """site_id,site_name,kind,communities,municipality,zone_id,contact_id,contact_name,email,\
language,consent
s-ok,Fine Site,place_of_worship,muslim,Riverside,,c-ok,Ok,ok@example.org,en,yes
s-bad-mail,Bad Mail,place_of_worship,muslim,Riverside,,c-x,X,not-an-email,en,yes
s-bad-lang,Bad Lang,place_of_worship,muslim,Riverside,,c-y,Y,y@example.org,de,yes
s-no-muni,No Municipality,place_of_worship,muslim,,,,,,,
s-bad-zone,Bad Zone,place_of_worship,muslim,Riverside,zone-nowhere,,,,,
"""
BAD_YAML = """sites:
  - site_id: s1
    name: One
    communities: [muslim]
    municipality: Riverside
    zone_id: zone-missing
  - site_id: s2
    name: Two
    communities: []
    municipality: Hillview
roster:
  - entry_id: r1
    level: 3
    name: Nobody
    email: nobody@example.org
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def _counts(db) -> tuple[int, int]:
    async with db.transaction() as session:
        sites = (await session.execute(select(func.count()).select_from(Site))).scalar()
        contacts = (await session.execute(select(func.count()).select_from(Contact))).scalar()
    return sites, contacts


async def test_a_good_csv_imports_and_round_trips_through_yaml(seeded, tmp_path: Path) -> None:
    sites, contacts = await _counts(seeded)
    async with seeded.transaction() as session:
        registry = parse_registry(_write(tmp_path, "good.csv", GOOD_CSV), await known_zone_ids(session))
        counts = await apply_registry(session, registry)
    assert counts == {"zones": 0, "sites": 3, "contacts": 4, "roster": 0, "own_choices_kept": 0}
    assert await _counts(seeded) == (sites + 3, contacts + 4)
    async with seeded.transaction() as session:
        exported = await export_registry(session)
        roster = (await session.execute(select(func.count()).select_from(RosterEntry))).scalar()
    assert roster == 2  # a file without a roster section leaves the roster alone
    again = parse_registry(_write(tmp_path, "again.yaml", registry_yaml(exported)))
    assert again == exported


async def test_a_bad_csv_reports_every_row_and_imports_nothing(seeded, tmp_path: Path) -> None:
    before = await _counts(seeded)
    path = _write(tmp_path, "bad.csv", BAD_CSV)
    async with seeded.transaction() as session:
        with pytest.raises(SourceError) as raised:
            registry = parse_registry(path, await known_zone_ids(session))
            await apply_registry(session, registry)
    problems = raised.value.problems
    assert any(p.startswith(f"{path}:3: email") for p in problems), problems
    assert any(p.startswith(f"{path}:4: language") for p in problems), problems
    assert any(p.startswith(f"{path}:5: municipality") for p in problems), problems
    assert any(p.startswith(f"{path}:6: site s-bad-zone: unknown patrol zone") for p in problems)
    assert len(problems) == 4  # the valid row 2 is not reported
    assert await _counts(seeded) == before  # not even the good row was applied


async def test_reference_errors_are_reported_with_their_lines(seeded, tmp_path: Path) -> None:
    zone_csv = BAD_CSV.splitlines()
    path = _write(tmp_path, "zones.csv", "\n".join([zone_csv[0], zone_csv[1], zone_csv[5]]) + "\n")
    with pytest.raises(SourceError, match=rf"{path}:3: site s-bad-zone: unknown patrol zone"):
        parse_registry(path, {"zone-north"})


async def test_a_bad_yaml_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.yaml", BAD_YAML)
    with pytest.raises(SourceError) as raised:
        parse_registry(path)
    problems = raised.value.problems
    assert any(p.startswith(f"{path}:9: sites.1.communities") for p in problems), problems
    assert any(p.startswith(f"{path}:13: roster.0.level") for p in problems), problems


# ------------------------------------------------------------------ audience

AUDIENCE_REGISTRY = """zones:
  - {zone_id: z1, name: Zone 1}
sites:
  - site_id: a-mosque-river
    name: River Mosque
    communities: [muslim]
    municipality: Riverside
    zone_id: z1
    contacts:
      - {contact_id: c1, name: One, email: one@example.org, channels: [email, sms],
         phone: "+1 555 0111", consent: true, language: fr}
      - {contact_id: c2, name: Two, email: two@example.org, consent: false}
  - site_id: b-mosque-hill
    name: Hill Mosque
    communities: [muslim]
    municipality: Hillview
    contacts:
      - {contact_id: c3, name: Three, email: three@example.org, consent: true}
  - site_id: c-interfaith-river
    name: Interfaith Centre
    kind: community_centre
    communities: [muslim, jewish]
    municipality: Riverside
    zone_id: z1
    contacts:
      - {contact_id: c4, name: Four, phone: "+1 555 0144", channels: [sms], consent: true}
  - site_id: d-shul-river
    name: River Shul
    communities: [jewish]
    municipality: Riverside
    zone_id: z1
    contacts:
      - {contact_id: c5, name: Five, email: five@example.org, consent: true}
"""


def _playbook(**audience: object) -> Playbook:
    return Playbook.model_validate({
        "id": "pb-test", "title": "t", "owner": "o", "match": {"communities": {"any": ["muslim"]}},
        "response": {"notify": [{"channels": ["email", "sms"], **audience}],
                     "patrol": {"every_minutes": 60}}})


@pytest.fixture
async def audience_db(db, tmp_path: Path):
    async with db.transaction() as session:
        await apply_registry(session, parse_registry(_write(tmp_path, "r.yaml", AUDIENCE_REGISTRY)))
    return db


@pytest.mark.parametrize(("communities", "audience", "sites", "recipients", "patrols"), [
    # matched community, every municipality: both mosques and the interfaith centre
    (("muslim",), {}, ["a-mosque-river", "b-mosque-hill", "c-interfaith-river"],
     [("c1", "email"), ("c1", "sms"), ("c3", "email"), ("c4", "sms")],
     ["a-mosque-river", "c-interfaith-river"]),
    # restricted to one municipality
    (("muslim",), {"municipalities": ["Hillview"]}, ["b-mosque-hill"], [("c3", "email")], []),
    # two matched communities: the shul joins
    (("muslim", "jewish"), {"municipalities": ["Riverside"]},
     ["a-mosque-river", "c-interfaith-river", "d-shul-river"],
     [("c1", "email"), ("c1", "sms"), ("c4", "sms"), ("c5", "email")],
     ["a-mosque-river", "c-interfaith-river", "d-shul-river"]),
    # a fixed community and a site kind
    (("muslim",), {"communities": ["jewish"], "site_kinds": ["community_centre"]},
     ["c-interfaith-river"], [("c4", "sms")], ["c-interfaith-river"]),
])
async def test_audience_across_municipalities_and_communities(audience_db, communities, audience,
                                                              sites, recipients, patrols) -> None:
    alert = make_alert(communities=communities)
    async with audience_db.transaction() as session:
        plan = await resolve_audience(session, alert, _playbook(**audience))
    assert sorted(plan.sites) == sites
    assert sorted((r.contact_id, r.channel) for r in plan.recipients) == recipients
    assert sorted(p.site_id for p in plan.patrols) == patrols
    # consent is required: contact c2 is never a recipient
    assert all(r.contact_id != "c2" for r in plan.recipients)


async def test_scope_narrowing_drops_sites_channels_and_patrols(audience_db) -> None:
    alert = make_alert().model_copy(update={"scope": Scope(
        excluded_sites=("b-mosque-hill",), excluded_channels=("sms",),
        excluded_patrol_sites=("c-interfaith-river",))})
    async with audience_db.transaction() as session:
        plan = await resolve_audience(session, alert, _playbook())
    assert sorted(plan.sites) == ["a-mosque-river", "c-interfaith-river"]
    assert [(r.contact_id, r.channel, r.language) for r in plan.recipients] == [("c1", "email", "fr")]
    assert [p.site_id for p in plan.patrols] == ["a-mosque-river"]
