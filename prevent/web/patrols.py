"""Patrol plans per zone as iCalendar and GeoJSON, and the record of visits done.

Routes (all need a principal from prevent.web.auth; recording a visit needs the
duty_inspector or admin role, reading needs any role):
* GET  /patrols/zones/{zone}.ics      one event per planned visit
* GET  /patrols/zones/{zone}.geojson  an RFC 7946 FeatureCollection, planned vs completed
* POST /api/patrols/{assignment_id}/visits  {"visited_at": ..., "note": ..., "key": ...}
* GET  /api/patrols/{assignment_id}/visits  planned and completed visits
* POST /patrols/{assignment_id}/visits      the console's form (board, alert page): the same
  record, audited on the alert, then back to the page it came from
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from icalendar import Calendar
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import select

from notifiers import patrol_exports as exports
from prevent import audit
from prevent.contracts import PatrolAssignment, utcnow
from prevent.platform.storage.tables import PatrolRow, Site
from prevent.users import Principal, Role, require
from prevent.web import deps, render
from prevent.web.api import ERRORS, refuse_nul
from prevent.web.auth import current_principal
from prevent.web.security import gate

router = APIRouter()
ZONE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
CLOCK_SKEW = timedelta(minutes=5)


class VisitIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    visited_at: AwareDatetime = Field(description="when the visit was done, with a UTC offset")
    note: str = Field(default="", max_length=2000)
    key: str | None = Field(default=None, max_length=100,
                            description="client idempotency key; default: the visit time")


def _zone(zone: str) -> str:
    if not re.match(ZONE_PATTERN, zone):
        raise HTTPException(422, "invalid zone id")
    return zone


@router.get("/patrols/zones/{zone}.ics")
async def zone_calendar(zone: str, request: Request,
                        _p: Principal = Depends(current_principal)) -> Response:
    async with deps.db(request).transaction() as session:
        assignments = await exports.zone_assignments(session, _zone(zone))
        addresses = dict((await session.execute(select(Site.site_id, Site.address).where(
            Site.site_id.in_({a.site_id for a in assignments})))).all()) if assignments else {}
    body = with_addresses(exports.zone_ics(zone, assignments), assignments, addresses)
    return Response(body, media_type="text/calendar; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="patrols-{zone}.ics"'})


def with_addresses(ics: bytes, assignments: list[PatrolAssignment], addresses: dict[str, str]) -> bytes:
    """Each event's LOCATION as "site name, street address" (officers navigate by it)."""
    by_assignment = {a.assignment_id: a for a in assignments}
    calendar = Calendar.from_ical(ics)
    for event in calendar.walk("VEVENT"):
        plan = by_assignment.get(str(event.get("uid", "")).rsplit("-", 1)[0])
        address = addresses.get(plan.site_id) if plan else None
        if plan and address:
            event.pop("location", None)
            event.add("location", f"{plan.site_name}, {address}")
    text: bytes = calendar.to_ical()  # unannotated in icalendar
    return text


@router.get("/patrols/zones/{zone}.geojson")
async def zone_map(zone: str, request: Request,
                   _p: Principal = Depends(current_principal)) -> JSONResponse:
    async with deps.db(request).transaction() as session:
        assignments = await exports.zone_assignments(session, _zone(zone))
        completed = await exports.completed_counts(session, [a.assignment_id for a in assignments])
    return JSONResponse(exports.zone_geojson(zone, assignments, completed),
                        media_type="application/geo+json")


@router.post("/api/patrols/{assignment_id}/visits", status_code=201, responses={
    200: {"description": "the same visit (same key) was recorded before: nothing new"}, **ERRORS},
    dependencies=[Depends(refuse_nul)])
async def record_visit(assignment_id: str, body: VisitIn, request: Request,
                       principal: Principal = Depends(current_principal)) -> JSONResponse:
    require(principal, Role.DUTY_INSPECTOR, Role.ADMIN, action="record patrol visits")
    if body.visited_at > utcnow() + CLOCK_SKEW:
        raise HTTPException(422, "visited_at is in the future")
    try:
        async with deps.db(request).transaction() as session:
            row, new = await exports.record_visit(session, assignment_id, visited_at=body.visited_at,
                                                  note=body.note, actor=principal.name, key=body.key)
    except LookupError as exc:
        raise HTTPException(404, "no such patrol assignment") from exc
    return JSONResponse({"visit_id": row.visit_id, "assignment_id": assignment_id,
                         "visited_at": row.visited_at.isoformat(), "note": row.note,
                         "recorded_by": row.recorded_by, "new": new},
                        status_code=201 if new else 200)


@router.get("/api/patrols/{assignment_id}/visits", responses=ERRORS,
            dependencies=[Depends(refuse_nul)])
async def list_visits(assignment_id: str, request: Request,
                      _p: Principal = Depends(current_principal)) -> dict[str, object]:
    async with deps.db(request).transaction() as session:
        row = await session.get(PatrolRow, assignment_id)
        if row is None:
            raise HTTPException(404, "no such patrol assignment")
        done = await exports.visits(session, assignment_id)
    plan = PatrolAssignment.model_validate(row.payload)
    return {"assignment_id": assignment_id, "status": plan.status.value,
            "planned": [t.isoformat() for t in exports.planned_visits(plan)],
            "completed": [{"visit_id": v.visit_id, "visited_at": v.visited_at.isoformat(),
                           "note": v.note, "recorded_by": v.recorded_by} for v in done]}


def _back(target: str, fallback: str) -> str:
    """Only a same-site path (no scheme, no //host): the board or an alert page."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target \
        else fallback


@router.post("/patrols/{assignment_id}/visits")
async def record_visit_form(assignment_id: str, request: Request,
                            principal: Principal = Depends(gate)) -> Response:
    """"Record a visit" on the patrol board and the alert page: now, or the time given in
    the unit's zone; audited on the alert so its timeline shows it."""
    require(principal, Role.DUTY_INSPECTOR, Role.ADMIN, action="record patrol visits")
    form = await request.form()
    back = _back(str(form.get("next", "")), "/patrols")
    text = str(form.get("visited_at", "")).strip()
    try:
        visited_at = utcnow() if not text else datetime.fromisoformat(text)
    except ValueError:
        return render.message(request, "Visit not recorded", "give the time as YYYY-MM-DD HH:MM",
                              status=422)
    if visited_at.tzinfo is None:  # a datetime-local field: the unit's wall clock
        visited_at = visited_at.replace(tzinfo=render.zone(deps.settings(request).time_zone))
    if visited_at > utcnow() + CLOCK_SKEW:
        return render.message(request, "Visit not recorded", "the visit time is in the future",
                              status=422)
    note = str(form.get("note", "")).strip()[:2000]
    async with deps.db(request).transaction() as session:
        plan = await session.get(PatrolRow, assignment_id[:64])
        if plan is None:
            return render.message(request, "Visit not recorded", "no such patrol assignment",
                                  status=404)
        row, new = await exports.record_visit(session, assignment_id, visited_at=visited_at,
                                              note=note, actor=principal.name)
        if new:
            await audit.record(session, actor=principal.name, action="patrol.visit_recorded",
                               subject=plan.alert_id, key=f"{row.visit_id}:audit",
                               after={"assignment_id": assignment_id, "site_id": plan.site_id,
                                      "visited_at": row.visited_at.isoformat()}, reason=note or None)
    deps.kick(request)
    sep = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{sep}recorded={assignment_id}", status_code=303)
