"""Audience resolution: who gets which notice and which sites get patrols, for one alert.

The same function serves the preview a duty inspector sees before confirming and
the notifiers after confirmation, so what was previewed is what is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.contracts import Alert
from prevent.playbooks.schema import ANY_COMMUNITY, MATCHED, Audience, PatrolPlan, Playbook
from prevent.storage.tables import Contact, IncidentRow, Site

PARTNER_FEED = "partner:"  # the feed id of a partner's report: partner:<site id> (prevent.acks)
MAX_REPORTING_SITES = 50


@dataclass(frozen=True)
class Recipient:
    site_id: str
    site_name: str
    contact_id: str
    channel: str
    language: str
    template: str


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


def _site_in_audience(site: Site, audience: Audience, communities: frozenset[str],
                      reporting: frozenset[str]) -> bool:
    if audience.reporting_site:
        in_scope = site.site_id in reporting  # the site's own report: its communities don't matter
    else:
        wanted = {c for c in audience.communities if c != MATCHED}
        if MATCHED in audience.communities:
            wanted |= communities
        in_scope = ANY_COMMUNITY in wanted or bool(wanted & set(site.communities))
    return (in_scope
            and (not audience.municipalities or site.municipality in audience.municipalities)
            and (not audience.site_kinds or site.kind in audience.site_kinds))


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


async def resolve_audience(session: AsyncSession, alert: Alert, playbook: Playbook) -> AudiencePlan:
    sites = (await session.execute(select(Site).order_by(Site.site_id))).scalars().all()
    communities = frozenset(alert.communities)
    reporting = (await reporting_sites(session, alert)
                 if any(a.reporting_site for a in playbook.response.notify) else frozenset())
    excluded = set(alert.scope.excluded_sites)
    targeted: dict[str, tuple[Site, list[Audience]]] = {}
    for site in sites:
        if site.site_id in excluded:
            continue
        for audience in playbook.response.notify:
            if _site_in_audience(site, audience, communities, reporting):
                targeted.setdefault(site.site_id, (site, []))[1].append(audience)
    contacts = (await session.execute(
        select(Contact).where(Contact.site_id.in_(list(targeted)), Contact.consent.is_(True))
        .order_by(Contact.contact_id)
    )).scalars().all() if targeted else []
    recipients: dict[tuple[str, str], Recipient] = {}
    for contact in contacts:
        site, audiences = targeted[contact.site_id]
        for audience in audiences:
            for channel in audience.channels:
                if channel in alert.scope.excluded_channels or not _reachable(contact, channel):
                    continue
                recipients.setdefault((contact.contact_id, channel), Recipient(
                    site.site_id, site.name, contact.contact_id, channel, contact.language,
                    audience.template))
    plan = playbook.response.patrol
    patrols = tuple(
        PatrolTarget(site.site_id, site.name, site.zone_id, plan, site.lat, site.lon,
                     site.floor_plan_ref)
        for site, _ in targeted.values()
        if plan is not None and site.zone_id and site.site_id not in alert.scope.excluded_patrol_sites
    )
    return AudiencePlan(tuple(recipients.values()), patrols, tuple(targeted))
