"""Read-mostly console pages: notices, the patrol board (and its printable sheet), the
audit log, feed health, and the partner registry (list, search, CSV import)."""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from starlette.datastructures import UploadFile

from prevent import audit
from prevent.contracts import PatrolAssignment, PatrolStatus, utcnow
from prevent.feeds.health import feed_health
from prevent.partners import checks as registry_checks
from prevent.partners import edits as partners
from prevent.partners import registry, site_diasporas
from prevent.platform.storage.tables import AlertRow, AuditRow, NoticeRow, PatrolRow, PatrolVisitRow, Site
from prevent.platform.yamlsource import SourceError
from prevent.users import Principal, Role, require
from prevent.web import deps, render
from prevent.web.security import gate

router = APIRouter()
MAX_IMPORT_BYTES = 2_000_000
VISIT_RECORDERS = (Role.DUTY_INSPECTOR, Role.ADMIN)  # as POST /api/patrols/{id}/visits


@router.get("/notices", response_class=HTMLResponse)
async def notices(request: Request, _p: Principal = Depends(gate)) -> HTMLResponse:
    alert_id = request.query_params.get("alert", "").strip()[:64]
    query = select(NoticeRow).order_by(NoticeRow.alert_id, NoticeRow.site_id, NoticeRow.created_at)
    if alert_id:
        query = query.where(NoticeRow.alert_id == alert_id)
    async with deps.db(request).transaction() as session:
        rows = (await session.execute(query.limit(1000))).scalars().all()
        unknown = bool(alert_id) and not rows and await session.get(AlertRow, alert_id) is None
    by_alert: dict[str, list[NoticeRow]] = defaultdict(list)
    for row in rows:
        by_alert[row.alert_id].append(row)
    state = deps.state(request)
    demo_outbox = bool(getattr(state, "outbox", None) or getattr(state, "http_outbox", None))
    return render.page(request, "notices.html", {"by_alert": dict(by_alert), "alert_id": alert_id,
                                                 "demo_outbox": demo_outbox, "unknown": unknown},
                       status=404 if unknown else 200)


async def active_assignments(request: Request, zone: str | None = None) -> dict[str, list[PatrolAssignment]]:
    query = select(PatrolRow).where(PatrolRow.status == PatrolStatus.ASSIGNED.value)
    if zone:
        query = query.where(PatrolRow.zone_id == zone)
    async with deps.db(request).transaction() as session:
        rows = (await session.execute(query.order_by(PatrolRow.zone_id, PatrolRow.created_at))).scalars()
        plans = [PatrolAssignment.model_validate(r.payload) for r in rows]
    now = utcnow()
    by_zone: dict[str, list[PatrolAssignment]] = defaultdict(list)
    for plan in plans:
        if plan.ends_at >= now:
            by_zone[plan.zone].append(plan)
    return dict(by_zone)


async def plan_extras(request: Request, plans: list[PatrolAssignment]
                      ) -> tuple[dict[str, list[PatrolVisitRow]], dict[str, str]]:
    """The visits recorded for each assignment (oldest first) and each site's street address."""
    ids = [p.assignment_id for p in plans]
    sites = list({p.site_id for p in plans})
    if not ids:
        return {}, {}
    async with deps.db(request).transaction() as session:
        done = (await session.execute(select(PatrolVisitRow).where(
            PatrolVisitRow.assignment_id.in_(ids)).order_by(PatrolVisitRow.visited_at))).scalars().all()
        addresses = dict((await session.execute(select(Site.site_id, Site.address).where(
            Site.site_id.in_(sites)))).all())
    visits: dict[str, list[PatrolVisitRow]] = defaultdict(list)
    for visit in done:
        visits[visit.assignment_id].append(visit)
    return dict(visits), {k: v for k, v in addresses.items() if v}


@router.get("/patrols", response_class=HTMLResponse)
async def patrol_board(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    zones = await active_assignments(request)
    visits, addresses = await plan_extras(request, [p for plans in zones.values() for p in plans])
    return render.page(request, "patrols.html", {
        "zones": zones, "visits": visits, "addresses": addresses,
        "can_record": principal.role in VISIT_RECORDERS, "recorded": request.query_params.get("recorded")})


@router.get("/patrols/zones/{zone}/sheet", response_class=HTMLResponse)
async def patrol_sheet(request: Request, zone: str, _p: Principal = Depends(gate)) -> HTMLResponse:
    """A printable sheet for one zone (the stylesheet's print rules drop the navigation)."""
    zones = await active_assignments(request, zone[:100])
    plans = zones.get(zone, [])
    visits, addresses = await plan_extras(request, plans)
    return render.page(request, "patrol_sheet.html", {"zone": zone, "plans": plans,
                                                      "visits": visits, "addresses": addresses,
                                                      "printed": utcnow()})


@router.get("/audit", response_class=HTMLResponse)
async def audit_log(request: Request, _p: Principal = Depends(gate)) -> HTMLResponse:
    q = request.query_params
    subject, actor, action = (q.get(k, "").strip()[:200] for k in ("subject", "actor", "action"))
    hours = q.get("hours", "168")
    since = utcnow() - timedelta(hours=float(hours)) if hours.replace(".", "", 1).isdigit() else None
    query = select(AuditRow).order_by(AuditRow.at.desc()).limit(500)
    if subject:
        query = query.where(AuditRow.subject == subject)
    if actor:
        query = query.where(AuditRow.actor == actor)
    if action:
        query = query.where(AuditRow.action.startswith(action))
    if since:
        query = query.where(AuditRow.at >= since)
    async with deps.db(request).transaction() as session:
        rows = (await session.execute(query)).scalars().all()
    return render.page(request, "audit.html", {"rows": rows, "f": {
        "subject": subject, "actor": actor, "action": action, "hours": hours}})


@router.get("/feeds", response_class=HTMLResponse)
async def feeds(request: Request, _p: Principal = Depends(gate)) -> HTMLResponse:
    return render.page(request, "feeds.html", {"feeds": await feed_health(deps.db(request))})


async def _partners_page(request: Request, principal: Principal, *, problems: list[str] | None = None,
                         imported: dict[str, int] | None = None, status: int = 200) -> HTMLResponse:
    search = request.query_params.get("q", "").strip().casefold()[:100]
    async with deps.db(request).transaction() as session:
        current = await partners.read(session, principal)
        places = await site_diasporas.places_in_force(session, deps.settings(request).playbooks_dir)
    names = {d: places.name(d) for s in current.sites for d in s.diasporas}
    sites = [s for s in current.sites if not search or search in
             " ".join([s.site_id, s.name, s.municipality, *s.communities, *s.diasporas,
                       *(names[d] for d in s.diasporas)]).casefold()]
    return render.page(request, "partners.html", {"sites": sites, "q": search, "problems": problems,
                                                  "imported": imported, "diaspora_names": names},
                       status=status)


@router.get("/partners", response_class=HTMLResponse)
async def partners_page(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    return await _partners_page(request, principal)


def upload_name(filename: str | None) -> str:
    """An uploaded file's own name for messages: its last path part (browsers may send a
    path), no control characters, at most 100 characters; "upload.csv" if it has none."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(c for c in name if c.isprintable()).strip()[:100]
    return name or "upload.csv"


@router.post("/partners/import", response_class=HTMLResponse)
async def partners_import(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    """All or nothing, as `prevent partners import`: every bad row is reported with its line."""
    require(principal, *partners.EDITORS, action="import the partner registry")
    upload = (await request.form()).get("file")
    data = await upload.read(MAX_IMPORT_BYTES + 1) if isinstance(upload, UploadFile) else b""
    if not data or len(data) > MAX_IMPORT_BYTES:
        return await _partners_page(request, principal, status=422,
                                    problems=["choose a CSV file of at most 2 MB"])
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return await _partners_page(request, principal, status=422, problems=[
            "the file is not UTF-8 text: save it as \"CSV UTF-8\" and import it again"])
    max_rows = deps.settings(request).import_max_rows
    # The header, then one line per row; lines end in LF, CRLF or CR alone (read_text's
    # universal newlines), so a CR-only file is counted as the parser will read it.
    if data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n") > max_rows + 1:
        return await _partners_page(request, principal, status=422, problems=[
            f"the file has more than {max_rows} rows: split it (PREVENT_IMPORT_MAX_ROWS)"])
    name = upload_name(getattr(upload, "filename", None))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.csv"
        path.write_bytes(data)
        try:
            async with deps.db(request).transaction() as session:
                zones = await registry.known_zone_ids(session)
                places = await site_diasporas.places_in_force(
                    session, deps.settings(request).playbooks_dir)
                # Parsing and validating every row is CPU work: in a thread, off the event loop.
                # Every problem of the file at once (schema, references, communities, diasporas,
                # contact columns without an id), named by the file's own name; nothing applied if any.
                parsed = await asyncio.to_thread(registry_checks.parse, path, zones,
                                                 deps.settings(request).playbooks_dir, source=name,
                                                 places=places)
                counts = await registry.apply_registry(session, parsed)
                await audit.record(session, actor=principal.name, action="registry.import",
                                   subject="registry", after=counts, reason=f"import of {name}")
        except SourceError as exc:
            return await _partners_page(request, principal, problems=exc.problems, status=422)
    deps.kick(request)
    return await _partners_page(request, principal, imported=counts)


# /playbooks and the playbook editor live in playbook_editor.py; site editing in partner_editor.py.
