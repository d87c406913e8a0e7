"""Patrol plans per zone as iCalendar and GeoJSON, and the record of visits done.

Routes (all need a principal from prevent.auth; recording a visit needs the
duty_inspector or admin role, reading needs any role):
* GET  /patrols/zones/{zone}.ics      one event per planned visit
* GET  /patrols/zones/{zone}.geojson  an RFC 7946 FeatureCollection, planned vs completed
* POST /api/patrols/{assignment_id}/visits  {"visited_at": ..., "note": ..., "key": ...}
* GET  /api/patrols/{assignment_id}/visits  planned and completed visits
"""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from notifiers import patrol_exports as exports
from prevent.auth import current_principal
from prevent.console import deps
from prevent.contracts import PatrolAssignment, utcnow
from prevent.storage.tables import PatrolRow
from prevent.users import Principal, Role, require

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
    return Response(exports.zone_ics(zone, assignments), media_type="text/calendar; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="patrols-{zone}.ics"'})


@router.get("/patrols/zones/{zone}.geojson")
async def zone_map(zone: str, request: Request,
                   _p: Principal = Depends(current_principal)) -> JSONResponse:
    async with deps.db(request).transaction() as session:
        assignments = await exports.zone_assignments(session, _zone(zone))
        completed = await exports.completed_counts(session, [a.assignment_id for a in assignments])
    return JSONResponse(exports.zone_geojson(zone, assignments, completed),
                        media_type="application/geo+json")


@router.post("/api/patrols/{assignment_id}/visits", status_code=201)
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


@router.get("/api/patrols/{assignment_id}/visits")
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
