"""Audience decisions on plain values, no database (issue 25, point 3): who gets which notice,
on which channel, and which sites get patrols, for one alert (prevent.alerts.audience.decide_audience).

The registry below is fictional; its sites and contacts are unsaved rows, in the order of their ids,
as ``resolve_audience`` loads them. Each case names the exact sites, recipients (in order), patrol
targets and reasons it expects.
"""

from __future__ import annotations

from typing import Any

import pytest

from prevent.alerts.audience import AudiencePlan, decide_audience
from prevent.contracts import Alert, AlertStatus, Evidence, Scope, utcnow
from prevent.partners.site_diasporas import Places, Region
from prevent.platform.storage.tables import Contact, Site
from prevent.rules.playbooks.schema import Playbook


def _site(site_id: str, kind: str, communities: list[str], municipality: str,
          zone_id: str | None = None, diasporas: tuple[str, ...] = ()) -> Site:
    return Site(site_id=site_id, name=site_id.upper(), kind=kind, communities=communities,
                municipality=municipality, zone_id=zone_id, lat=45.0 if zone_id else None,
                lon=-73.0 if zone_id else None, floor_plan_ref=None, diasporas=list(diasporas))


def _contact(contact_id: str, site_id: str, channels: list[str], *, email: bool = True,
             phone: bool = False, webhook: bool = False, consent: bool = True,
             language: str = "en") -> Contact:
    return Contact(contact_id=contact_id, site_id=site_id, name=contact_id, channels=channels,
                   email=f"{contact_id}@example.org" if email else None,
                   phone="+1 555 0100" if phone else None,
                   webhook_url=f"https://example.org/{contact_id}" if webhook else None,
                   consent=consent, language=language)


SITES = (
    _site("a-mosque-river", "place_of_worship", ["muslim"], "Riverside", "z-north"),
    _site("b-mosque-hill", "place_of_worship", ["muslim"], "Hillview"),  # no zone: no patrol
    _site("c-interfaith-river", "community_centre", ["muslim", "jewish"], "Riverside", "z-north"),
    _site("d-shul-river", "place_of_worship", ["jewish"], "Riverside", "z-south"),
    _site("e-caribbean-hill", "community_centre", ["black"], "Hillview", "z-south", ("JM", "HT")),
    _site("f-kerala-river", "community_centre", ["hindu"], "Riverside", diasporas=("IN-KL",)),
)
CONTACTS = (
    _contact("c1", "a-mosque-river", ["email", "sms"], phone=True, language="fr"),
    _contact("c2", "a-mosque-river", ["email"], consent=False),  # opted out
    _contact("c3", "b-mosque-hill", ["email", "sms"]),  # sms chosen, but no phone number
    _contact("c4", "c-interfaith-river", ["sms"], email=False, phone=True),
    _contact("c5", "d-shul-river", ["email", "webhook"]),  # webhook chosen, but no address
    _contact("c6", "e-caribbean-hill", ["email", "webhook"], webhook=True),
    _contact("c7", "f-kerala-river", ["email"]),
    _contact("c8", "z-gone", ["email"]),  # its site is no longer in the registry
)
PLACES = Places(regions={"IN-KL": Region("IN-KL", "IN", ("Kerala",))})


def _alert(communities: tuple[str, ...] = ("muslim",), *, incident_type: str = "arson",
           country: str | None = None, rules: tuple[str, ...] = (), scope: Scope | None = None) -> Alert:
    now = utcnow()
    return Alert(alert_id="alr_decide", cluster_id="cls_decide", incident_ids=("inc_decide",),
                 playbook_id="pb-test", playbook_version=1, status=AlertStatus.PROPOSED, revision=1,
                 severity=3, communities=communities, incident_type=incident_type, title="t",
                 country=country, evidence=tuple(Evidence(rule=r, term="x") for r in rules),
                 scope=scope or Scope(), created_at=now, updated_at=now)


def _playbook(*notify: dict[str, Any], patrol: bool = True, role: str = "targeted") -> Playbook:
    return Playbook.model_validate({
        "id": "pb-test", "title": "t", "owner": "o",
        "match": {"communities": {"any": ["muslim"], "role": role}},
        "response": {"notify": list(notify), **({"patrol": {"every_minutes": 60}} if patrol else {})}})


MATCHED_EMAIL_SMS = {"communities": ["$matched"], "channels": ["email", "sms"]}
JAMAICA = {"incident_type": "natural_disaster", "country": "JM", "rules": ("country:JM",)}
KERALA = {"incident_type": "natural_disaster", "country": "IN", "rules": ("region:IN-KL",)}

# (alert, playbook, reporting sites, places) -> sites, recipients (contact, channel, template) in
# order, patrol targets, reasons (site: why, for sites in only through their diasporas)
CASES = [
    pytest.param(
        _alert(), _playbook(MATCHED_EMAIL_SMS), frozenset(), None,
        ["a-mosque-river", "b-mosque-hill", "c-interfaith-river"],
        [("c1", "email", "default"), ("c1", "sms", "default"), ("c3", "email", "default"),
         ("c4", "sms", "default")],
        ["a-mosque-river", "c-interfaith-river"], {},
        id="matched-community-opt-out-and-unreachable-channels-left-out"),
    pytest.param(
        _alert(("muslim", "jewish")), _playbook(MATCHED_EMAIL_SMS), frozenset(), None,
        ["a-mosque-river", "b-mosque-hill", "c-interfaith-river", "d-shul-river"],
        [("c1", "email", "default"), ("c1", "sms", "default"), ("c3", "email", "default"),
         ("c4", "sms", "default"), ("c5", "email", "default")],
        ["a-mosque-river", "c-interfaith-river", "d-shul-river"], {},
        id="two-matched-communities"),
    pytest.param(
        _alert(), _playbook({"communities": ["jewish"], "channels": ["email", "sms"]}), frozenset(), None,
        ["c-interfaith-river", "d-shul-river"], [("c4", "sms", "default"), ("c5", "email", "default")],
        ["c-interfaith-river", "d-shul-river"], {},
        id="fixed-community-whatever-the-alert-matched"),
    pytest.param(
        _alert(("sikh",)), _playbook({"communities": ["*"]}), frozenset(), None,
        [s.site_id for s in SITES],
        [("c1", "email", "default"), ("c3", "email", "default"), ("c5", "email", "default"),
         ("c6", "email", "default"), ("c7", "email", "default")],
        ["a-mosque-river", "c-interfaith-river", "d-shul-river", "e-caribbean-hill"], {},
        id="every-community"),
    pytest.param(
        _alert(), _playbook({**MATCHED_EMAIL_SMS, "municipalities": ["Hillview"]}), frozenset(), None,
        ["b-mosque-hill"], [("c3", "email", "default")], [], {},
        id="municipality-filter"),
    pytest.param(
        _alert(), _playbook({**MATCHED_EMAIL_SMS, "site_kinds": ["community_centre"]}), frozenset(), None,
        ["c-interfaith-river"], [("c4", "sms", "default")], ["c-interfaith-river"], {},
        id="site-kind-filter"),
    pytest.param(
        _alert(("sikh",)), _playbook({"communities": ["*"], "channels": ["webhook"]}), frozenset(), None,
        [s.site_id for s in SITES], [("c6", "webhook", "default")],
        ["a-mosque-river", "c-interfaith-river", "d-shul-river", "e-caribbean-hill"], {},
        id="webhook-only-where-an-address-is-given"),
    pytest.param(
        _alert(), _playbook({"communities": ["$matched"], "channels": ["email"], "template": "first"},
                            {"communities": ["*"], "channels": ["email", "sms"], "template": "second"}),
        frozenset(), None,
        [s.site_id for s in SITES],
        [("c1", "email", "first"), ("c1", "sms", "second"), ("c3", "email", "first"),
         ("c4", "sms", "second"), ("c5", "email", "second"), ("c6", "email", "second"),
         ("c7", "email", "second")],
        ["a-mosque-river", "c-interfaith-river", "d-shul-river", "e-caribbean-hill"], {},
        id="two-audiences-one-notice-per-contact-and-channel-first-template-wins"),
    pytest.param(
        _alert(("christian",), **JAMAICA), _playbook({"communities": ["$matched"]}), frozenset(), None,
        ["e-caribbean-hill"], [("c6", "email", "default")], ["e-caribbean-hill"],
        {"e-caribbean-hill": "serves the diaspora of Jamaica"},
        id="diaspora-served"),
    pytest.param(
        _alert(("black",), **JAMAICA), _playbook({"communities": ["$matched"]}), frozenset(), None,
        ["e-caribbean-hill"], [("c6", "email", "default")], ["e-caribbean-hill"], {},
        id="in-by-community-and-diaspora-needs-no-reason"),
    pytest.param(
        _alert(("christian",), **JAMAICA),
        _playbook({"communities": ["black"], "template": "first"}, {"communities": ["$matched"]}),
        frozenset(), None, ["e-caribbean-hill"], [("c6", "email", "first")], ["e-caribbean-hill"], {},
        id="in-by-community-for-one-audience-and-diaspora-for-another-needs-no-reason"),
    pytest.param(
        _alert(("christian",), **KERALA), _playbook({"communities": ["$matched"]}), frozenset(), PLACES,
        ["f-kerala-river"], [("c7", "email", "default")], [],
        {"f-kerala-river": "serves the diaspora of Kerala"},
        id="diaspora-region-named-by-the-map"),
    pytest.param(
        _alert(("christian",), **KERALA), _playbook({"communities": ["$matched"]}), frozenset(), None,
        ["f-kerala-river"], [("c7", "email", "default")], [],
        {"f-kerala-river": "serves the diaspora of IN-KL"},
        id="diaspora-region-without-the-map"),
    pytest.param(
        _alert(("christian",), **JAMAICA), _playbook({"communities": ["$matched"], "diasporas": False}),
        frozenset(), None, [], [], [], {},
        id="diasporas-off"),
    pytest.param(
        _alert(("christian",), **JAMAICA), _playbook({"communities": ["$matched"]}, role="backlash"),
        frozenset(), None, [], [], [], {},
        id="backlash-playbook-no-diaspora"),
    pytest.param(
        _alert(("christian",), **JAMAICA), _playbook({"communities": ["christian", "black"]}),
        frozenset(), None, ["e-caribbean-hill"], [("c6", "email", "default")], ["e-caribbean-hill"], {},
        id="fixed-communities-in-by-community-not-diaspora"),
    pytest.param(
        _alert(("christian",), **JAMAICA), _playbook({"communities": ["$matched"], "site_kinds": ["school"]}),
        frozenset(), None, [], [], [], {},
        id="diaspora-site-still-filtered"),
    pytest.param(
        _alert(), _playbook({"reporting_site": True, "channels": ["email", "sms"]}),
        frozenset({"d-shul-river", "z-gone"}), None,
        ["d-shul-river"], [("c5", "email", "default")], ["d-shul-river"], {},
        id="reporting-site-whatever-its-communities"),
    pytest.param(
        _alert(), _playbook({"reporting_site": True, "municipalities": ["Hillview"]}),
        frozenset({"d-shul-river"}), None, [], [], [], {},
        id="reporting-site-still-filtered"),
    pytest.param(
        _alert(), _playbook({"reporting_site": True}), frozenset(), None, [], [], [], {},
        id="reporting-site-none-reported"),
    pytest.param(
        _alert(), _playbook(MATCHED_EMAIL_SMS, patrol=False), frozenset(), None,
        ["a-mosque-river", "b-mosque-hill", "c-interfaith-river"],
        [("c1", "email", "default"), ("c1", "sms", "default"), ("c3", "email", "default"),
         ("c4", "sms", "default")], [], {},
        id="no-patrol-plan-no-patrols"),
    pytest.param(
        _alert(scope=Scope(excluded_sites=("b-mosque-hill",), excluded_channels=("sms",),
                           excluded_patrol_sites=("c-interfaith-river",))),
        _playbook(MATCHED_EMAIL_SMS), frozenset(), None,
        ["a-mosque-river", "c-interfaith-river"], [("c1", "email", "default")], ["a-mosque-river"], {},
        id="scope-narrowed-by-the-inspector"),
    pytest.param(
        _alert(("sikh",)), _playbook(MATCHED_EMAIL_SMS), frozenset(), None, [], [], [], {},
        id="no-site-of-the-community"),
    pytest.param(
        _alert(), _playbook(), frozenset(), None, [], [], [], {},
        id="nobody-to-notify"),
]


@pytest.mark.parametrize(("alert", "playbook", "reporting", "places", "sites", "recipients", "patrols",
                          "reasons"), CASES)
def test_decide_audience(alert: Alert, playbook: Playbook, reporting: frozenset[str], places: Places | None,
                         sites: list[str], recipients: list[tuple[str, str, str]], patrols: list[str],
                         reasons: dict[str, str]) -> None:
    plan = decide_audience(alert, playbook, SITES, CONTACTS, reporting, places)
    assert list(plan.sites) == sites
    assert [(r.contact_id, r.channel, r.template) for r in plan.recipients] == recipients
    assert [p.site_id for p in plan.patrols] == patrols
    assert dict(plan.reasons) == reasons
    _assert_recipients_consistent(plan)


def _assert_recipients_consistent(plan: AudiencePlan) -> None:
    """Each recipient carries its contact's site, name and language, and its site's reason."""
    sites = {s.site_id: s for s in SITES}
    contacts = {c.contact_id: c for c in CONTACTS}
    reasons = dict(plan.reasons)
    for r in plan.recipients:
        contact = contacts[r.contact_id]
        assert (r.site_id, r.site_name, r.language) == (
            contact.site_id, sites[contact.site_id].name, contact.language)
        assert r.reason == reasons.get(r.site_id, "")
        assert bool(r.diasporas) == (r.site_id in reasons)


def test_a_diaspora_recipient_says_which_diasporas_put_it_in() -> None:
    alert = _alert(("christian",), incident_type="natural_disaster", country="JM",
                   rules=("homeland:HT", "country:JM"))
    plan = decide_audience(alert, _playbook({"communities": ["$matched"]}), SITES, CONTACTS)
    assert [(r.contact_id, r.diasporas, r.reason) for r in plan.recipients] == [
        ("c6", ("JM", "HT"), "serves the diaspora of Jamaica and Haiti")]


def test_a_patrol_target_carries_the_site_and_the_plan() -> None:
    playbook = _playbook({"communities": ["jewish"]})
    plan = decide_audience(_alert(), playbook, SITES, CONTACTS)
    assert [(p.site_id, p.site_name, p.zone_id, p.plan, p.lat, p.lon, p.floor_plan_ref)
            for p in plan.patrols] == [
        ("c-interfaith-river", "C-INTERFAITH-RIVER", "z-north", playbook.response.patrol, 45.0, -73.0, None),
        ("d-shul-river", "D-SHUL-RIVER", "z-south", playbook.response.patrol, 45.0, -73.0, None)]


def test_the_order_of_sites_and_contacts_given_is_the_order_of_the_plan() -> None:
    plan = decide_audience(_alert(), _playbook(MATCHED_EMAIL_SMS), SITES[::-1], CONTACTS[::-1])
    assert plan.sites == ("c-interfaith-river", "b-mosque-hill", "a-mosque-river")
    assert [(r.contact_id, r.channel) for r in plan.recipients] == [
        ("c4", "sms"), ("c3", "email"), ("c1", "email"), ("c1", "sms")]
    assert [p.site_id for p in plan.patrols] == ["c-interfaith-river", "a-mosque-river"]
