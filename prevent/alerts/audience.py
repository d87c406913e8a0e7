"""Audience resolution: who gets which notice and which sites get patrols, for one alert.

The same function serves the preview a duty inspector sees before confirming and
the notifiers after confirmation, so what was previewed is what is sent.

A site is in a notice's audience for its communities, or, when the alert concerns a country or
a region of the diaspora map (``prevent.partners.site_diasporas.concern``), for serving that diaspora;
a site in both ways is one site, notified once.

:func:`resolve_audience` loads the sites, their contacts, the sites that reported the event and
the diaspora map, then :func:`decide_audience` decides with no database: the rules are tested
on plain values (tests/test_audience_decide.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.contracts import Alert
from prevent.partners.site_diasporas import Concern, Places, as_list, concern, places_in_force, reason_text
from prevent.platform.storage.tables import Contact, IncidentRow, Site
from prevent.rules.playbooks.schema import ANY_COMMUNITY, MATCHED, Audience, PatrolPlan, Playbook

PARTNER_FEED = "partner:"  # the feed id of a partner's report: partner:<site id> (prevent.partners.acks)
MAX_REPORTING_SITES = 50


@dataclass(frozen=True)
class Recipient:
    site_id: str
    site_name: str
    contact_id: str
    channel: str
    language: str
    template: str
    # The site is in the audience only because it serves these diasporas (country codes,
    # diaspora-map region ids), not for its communities; ``reason`` says so in words.
    diasporas: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class PatrolTarget:
    site_id: str
    site_name: str
    zone_id: str
    plan: PatrolPlan
    lat: float | None
    lon: float | None
    floor_plan_ref: str | None


@dataclass(frozen=True)
class AudiencePlan:
    recipients: tuple[Recipient, ...]
    patrols: tuple[PatrolTarget, ...]
    sites: tuple[str, ...]
    # (site id, why) for each site in the audience only through the diasporas it serves.
    reasons: tuple[tuple[str, str], ...] = ()


def _filters_pass(site: Site, audience: Audience) -> bool:
    return ((not audience.municipalities or site.municipality in audience.municipalities)
            and (not audience.site_kinds or site.kind in audience.site_kinds))


def _site_in_audience(site: Site, audience: Audience, communities: frozenset[str],
                      reporting: frozenset[str]) -> bool:
    if audience.reporting_site:
        in_scope = site.site_id in reporting  # the site's own report: its communities don't matter
    else:
        wanted = {c for c in audience.communities if c != MATCHED}
        if MATCHED in audience.communities:
            wanted |= communities
        in_scope = ANY_COMMUNITY in wanted or bool(wanted & set(site.communities))
    return in_scope and _filters_pass(site, audience)


def _served_in_audience(site: Site, audience: Audience, concern: Concern) -> tuple[str, ...]:
    """The diasporas of ``site`` that put it in ``audience`` (empty: none do): only for an
    audience of the alert's own communities (``$matched``) that keeps ``diasporas`` on."""
    if (not concern or audience.reporting_site or not audience.diasporas
            or MATCHED not in audience.communities or not _filters_pass(site, audience)):
        return ()
    return concern.served_by(as_list(site.diasporas))


def alert_concern(alert: Alert, playbook: Playbook) -> Concern:
    """What the alert concerns for the diasporas sites serve; nothing for a playbook that
    matches only the communities at risk of backlash (the homeland is the victims' side)."""
    if playbook.match.communities.role == "backlash":
        return Concern()
    return concern(alert)


async def reporting_sites(session: AsyncSession, alert: Alert) -> frozenset[str]:
    """The partner sites whose contacts reported this event (a concern raised from an
    acknowledgement page is a ``partner:<site id>`` report in the alert's cluster)."""
    feeds = (await session.execute(select(IncidentRow.feed_id).where(
        IncidentRow.cluster_id == alert.cluster_id, IncidentRow.feed_id.like(f"{PARTNER_FEED}%"))
        .limit(MAX_REPORTING_SITES))).scalars()
    return frozenset(f.removeprefix(PARTNER_FEED) for f in feeds)


def _reachable(contact: Contact, channel: str) -> bool:
    address = {"email": contact.email, "sms": contact.phone, "webhook": contact.webhook_url}
    return channel in contact.channels and address.get(channel) is not None


def decide_audience(alert: Alert, playbook: Playbook, sites: Sequence[Site], contacts: Sequence[Contact],
                    reporting: frozenset[str] = frozenset(), places: Places | None = None) -> AudiencePlan:
    """Who gets which notice and which sites get patrols: the decision alone, no database.

    ``sites`` are every partner site, in the order of their ids (the order of the plan's
    sites, patrols and reasons); ``contacts`` their contacts, in the order of their ids (the
    order of the recipients); a contact without consent is never a recipient. ``reporting``
    are the sites whose contacts reported the event (:func:`reporting_sites`), read only by an
    audience of the reporting site; ``places`` the diaspora map in force, read only to name the
    regions of a site in the audience through the diasporas it serves.
    """
    communities = frozenset(alert.communities)
    about = alert_concern(alert, playbook)
    excluded = set(alert.scope.excluded_sites)
    targeted: dict[str, tuple[Site, list[Audience]]] = {}
    by_community: set[str] = set()
    served: dict[str, dict[str, None]] = {}  # site id -> the diasporas that put it in (ordered)
    for site in sites:
        if site.site_id in excluded:
            continue
        for audience in playbook.response.notify:
            if _site_in_audience(site, audience, communities, reporting):
                by_community.add(site.site_id)
            elif codes := _served_in_audience(site, audience, about):
                served.setdefault(site.site_id, {}).update(dict.fromkeys(codes))
            else:
                continue
            # A site in by its communities and by its diasporas is one site: notified once.
            targeted.setdefault(site.site_id, (site, []))[1].append(audience)
    # Why each site is in when only its diasporas put it there (a site in by its communities
    # needs no other reason). Country codes name themselves; regions need the map.
    why = {sid: tuple(codes) for sid, codes in served.items() if sid not in by_community}
    names = places if any(len(c) != 2 for codes in why.values() for c in codes) else None
    reasons = {sid: reason_text(codes, names) for sid, codes in why.items()}
    recipients: dict[tuple[str, str], Recipient] = {}
    for contact in contacts:
        if contact.consent is not True or contact.site_id not in targeted:
            continue
        site, audiences = targeted[contact.site_id]
        for audience in audiences:
            for channel in audience.channels:
                if channel in alert.scope.excluded_channels or not _reachable(contact, channel):
                    continue
                recipients.setdefault((contact.contact_id, channel), Recipient(
                    site.site_id, site.name, contact.contact_id, channel, contact.language,
                    audience.template, why.get(site.site_id, ()), reasons.get(site.site_id, "")))
    plan = playbook.response.patrol
    patrols = tuple(
        PatrolTarget(site.site_id, site.name, site.zone_id, plan, site.lat, site.lon,
                     site.floor_plan_ref)
        for site, _ in targeted.values()
        if plan is not None and site.zone_id and site.site_id not in alert.scope.excluded_patrol_sites
    )
    return AudiencePlan(tuple(recipients.values()), patrols, tuple(targeted),
                        tuple((sid, reasons[sid]) for sid in targeted if sid in reasons))


async def resolve_audience(session: AsyncSession, alert: Alert, playbook: Playbook) -> AudiencePlan:
    """Load what :func:`decide_audience` reads, then decide."""
    sites = (await session.execute(select(Site).order_by(Site.site_id))).scalars().all()
    contacts = (await session.execute(
        select(Contact).where(Contact.consent.is_(True)).order_by(Contact.contact_id)
    )).scalars().all()
    reporting = (await reporting_sites(session, alert)
                 if any(a.reporting_site for a in playbook.response.notify) else frozenset())
    # The map names regions only: load it when the alert concerns one (or an odd code).
    about = alert_concern(alert, playbook)
    places = (await places_in_force(session, None)
              if any(len(c) != 2 for c in about.countries | about.regions) else None)
    return decide_audience(alert, playbook, sites, contacts, reporting, places)
