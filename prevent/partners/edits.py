"""Registry edits as a service: role checks and an audit entry for each change.

Engagement officers maintain the registry; administrators may too. Contact details
are personal data, so reading the full registry needs the same roles, and the audit
trail records ids and counts, never names, addresses or numbers.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.partners import registry
from prevent.partners.registry import RegistryIn, RosterEntryIn, SiteIn, ZoneIn
from prevent.partners.site_diasporas import Places
from prevent.platform.yamlsource import SourceError
from prevent.users import Principal, Role, require

EDITORS = (Role.ENGAGEMENT_OFFICER, Role.ADMIN)


async def read(session: AsyncSession, principal: Principal) -> RegistryIn:
    require(principal, *EDITORS, action="read the partner registry (it holds contact details)")
    return await registry.export_registry(session)


async def put_site(session: AsyncSession, principal: Principal, site: SiteIn, *,
                   places: Places | None = None) -> None:
    """Store one site. ``places`` (the countries and regions of the diaspora map in force):
    its diasporas are checked and stored as codes; an unknown one is a SourceError naming
    ``diasporas[i]``. Without it they are stored as given (callers that checked them)."""
    require(principal, *EDITORS, action="edit the partner registry")
    if places is not None:
        codes, problems = places.normalise_all(site.diasporas)
        if problems:
            raise SourceError([f"site {site.site_id}: diasporas[{i}]: {msg}" for i, msg in problems])
        site = site.model_copy(update={"diasporas": codes})
    await registry.upsert_site(session, site)
    await audit.record(session, actor=principal.name, action="registry.site_put",
                       subject=f"site:{site.site_id}",
                       after={"municipality": site.municipality, "communities": site.communities,
                              "diasporas": site.diasporas, "zone": site.zone_id,
                              "contacts": len(site.contacts)})


async def delete_site(session: AsyncSession, principal: Principal, site_id: str) -> bool:
    require(principal, *EDITORS, action="edit the partner registry")
    deleted = await registry.delete_site(session, site_id)
    if deleted:
        await audit.record(session, actor=principal.name, action="registry.site_delete",
                           subject=f"site:{site_id}")
    return deleted


async def put_zone(session: AsyncSession, principal: Principal, zone: ZoneIn) -> None:
    require(principal, *EDITORS, action="edit the partner registry")
    await registry.upsert_zone(session, zone)
    await audit.record(session, actor=principal.name, action="registry.zone_put",
                       subject=f"zone:{zone.zone_id}", after={"name": zone.name})


async def delete_zone(session: AsyncSession, principal: Principal, zone_id: str) -> bool:
    require(principal, *EDITORS, action="edit the partner registry")
    deleted = await registry.delete_zone(session, zone_id)
    if deleted:
        await audit.record(session, actor=principal.name, action="registry.zone_delete",
                           subject=f"zone:{zone_id}")
    return deleted


async def put_roster(session: AsyncSession, principal: Principal, roster: list[RosterEntryIn]) -> None:
    require(principal, *EDITORS, action="edit the duty roster")
    registry.check_references(RegistryIn(roster=roster), set(), "roster")
    await registry.replace_roster(session, roster)
    await audit.record(session, actor=principal.name, action="registry.roster_put", subject="roster",
                       after={"entries": [f"L{e.level}:{e.entry_id}" for e in roster]})
