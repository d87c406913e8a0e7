"""Patrol plans for the people who drive them: per-zone iCalendar and GeoJSON exports, and
the record of visits done (planned vs completed).

* iCalendar (RFC 5545): one VEVENT per planned visit, UID stable per (assignment, visit
  number) so a calendar that re-imports the feed updates events instead of duplicating
  them; a cancelled plan's events carry STATUS:CANCELLED.
* GeoJSON (RFC 7946): a FeatureCollection, one Point feature per assignment at the site,
  coordinates in [longitude, latitude] order, WGS 84; a site without coordinates gets a
  null geometry (allowed by the RFC) so it is not silently dropped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from icalendar import Calendar, Event, vGeo
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.contracts import PatrolAssignment, PatrolStatus, stable_id, utcnow
from prevent.platform.storage.dialect import insert_if_absent
from prevent.platform.storage.tables import PatrolRow, PatrolVisitRow

VISIT_MINUTES = 15  # how long a directed patrol visit is planned to take
MAX_EVENTS = 2000  # an export is for people: cap a runaway plan


def planned_visits(a: PatrolAssignment) -> list[datetime]:
    out: list[datetime] = []
    at, step = a.starts_at, timedelta(minutes=a.every_minutes)
    while at < a.ends_at and len(out) < MAX_EVENTS:
        out.append(at)
        at += step
    return out


async def zone_assignments(session: AsyncSession, zone: str) -> list[PatrolAssignment]:
    rows = (await session.execute(select(PatrolRow).where(PatrolRow.zone_id == zone)
                                  .order_by(PatrolRow.created_at, PatrolRow.assignment_id))).scalars()
    return [PatrolAssignment.model_validate(r.payload) for r in rows]


def zone_ics(zone: str, assignments: list[PatrolAssignment]) -> bytes:
    cal = Calendar()
    cal.add("prodid", "-//prevent//patrol plans//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"Directed patrols - {zone}")
    stamp = utcnow()
    for a in assignments:
        for number, start in enumerate(planned_visits(a), start=1):
            ev = Event()
            ev.add("uid", f"{a.assignment_id}-{number}@prevent")
            ev.add("dtstamp", stamp)
            ev.add("dtstart", start)
            ev.add("dtend", start + timedelta(minutes=min(VISIT_MINUTES, a.every_minutes)))
            ev.add("summary", f"{'EXERCISE - ' if a.exercise else ''}Patrol: {a.site_name} "
                              f"({a.priority})")
            ev.add("location", a.site_name)
            if a.lat is not None and a.lon is not None:
                ev.add("geo", vGeo((a.lat, a.lon)))
            details = [a.instructions.strip()]
            if a.floor_plan_ref:
                details.append(f"Floor plan: {a.floor_plan_ref}")
            details.append(f"Assignment {a.assignment_id}, visit {number}; alert {a.alert_id}")
            ev.add("description", "\n".join(d for d in details if d))
            ev.add("priority", {"critical": 1, "high": 3, "normal": 5, "low": 9}[a.priority])
            ev.add("status", "CANCELLED" if a.status is PatrolStatus.CANCELLED else "CONFIRMED")
            ev.add("categories", ["exercise" if a.exercise else "patrol"])
            cal.add_component(ev)
    ical: bytes = cal.to_ical()  # icalendar leaves to_ical() unannotated
    return ical


def zone_geojson(zone: str, assignments: list[PatrolAssignment],
                 completed: dict[str, int]) -> dict[str, Any]:
    features = []
    for a in assignments:
        geometry = ({"type": "Point", "coordinates": [a.lon, a.lat]}
                    if a.lat is not None and a.lon is not None else None)
        features.append({"type": "Feature", "id": a.assignment_id, "geometry": geometry,
                         "properties": {
                             "assignment_id": a.assignment_id, "alert_id": a.alert_id,
                             "site_id": a.site_id, "site_name": a.site_name, "zone": a.zone,
                             "status": a.status.value, "priority": a.priority,
                             "starts_at": a.starts_at.isoformat(), "ends_at": a.ends_at.isoformat(),
                             "every_minutes": a.every_minutes, "instructions": a.instructions,
                             "floor_plan_ref": a.floor_plan_ref, "exercise": a.exercise,
                             "planned_visits": len(planned_visits(a)),
                             "completed_visits": completed.get(a.assignment_id, 0)}})
    return {"type": "FeatureCollection", "name": f"patrols-{zone}", "features": features}


async def completed_counts(session: AsyncSession, assignment_ids: list[str]) -> dict[str, int]:
    if not assignment_ids:
        return {}
    rows = await session.execute(
        select(PatrolVisitRow.assignment_id, func.count()).where(
            PatrolVisitRow.assignment_id.in_(assignment_ids)).group_by(PatrolVisitRow.assignment_id))
    return {aid: int(n) for aid, n in rows.all()}


async def record_visit(session: AsyncSession, assignment_id: str, *, visited_at: datetime,
                       note: str, actor: str, key: str | None = None) -> tuple[PatrolVisitRow, bool]:
    """Record one visit as done; the same (assignment, time) or client key twice is one visit.
    Returns the row and whether it was new. LookupError if there is no such assignment."""
    if await session.get(PatrolRow, assignment_id) is None:
        raise LookupError(assignment_id)
    visit_id = stable_id("vst", assignment_id, key or visited_at.isoformat())
    new = await insert_if_absent(session, PatrolVisitRow, {
        "visit_id": visit_id, "assignment_id": assignment_id, "visited_at": visited_at, "note": note,
        "recorded_by": actor, "recorded_at": utcnow()}, ["visit_id"])
    row = await session.get(PatrolVisitRow, visit_id)
    assert row is not None  # noqa: S101 - narrows the type: inserted or already there
    return row, new


async def visits(session: AsyncSession, assignment_id: str) -> list[PatrolVisitRow]:
    return list((await session.execute(select(PatrolVisitRow).where(
        PatrolVisitRow.assignment_id == assignment_id).order_by(PatrolVisitRow.visited_at))).scalars())
