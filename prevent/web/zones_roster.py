"""Patrol zones and the duty roster in the browser, for engagement officers: what the registry
import and the CLI already do, with each validation error shown next to its field. Saving goes
through ``prevent.partners.edits`` (role check, audit)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from starlette.datastructures import FormData

from prevent.partners import edits as partners
from prevent.partners.registry import RosterEntryIn, ZoneIn
from prevent.platform.storage.tables import Site
from prevent.platform.yamlsource import SourceError
from prevent.users import Principal, require
from prevent.web import deps, render
from prevent.web.security import gate

router = APIRouter()

ZONE_FIELDS = ("zone_id", "name", "dispatch_email")
ROSTER_FIELDS = ("entry_id", "level", "name", "email")
MAX_ROSTER = 50
Errors = dict[str, str]  # input id -> message ("" key: about the whole form)


def field_errors(exc: ValidationError, prefix: str) -> Errors:
    """Pydantic errors keyed by the form's input ids (``prefix`` + field name)."""
    errors: Errors = {}
    for err in exc.errors():
        name = err["loc"][0] if err["loc"] else ""
        errors.setdefault(f"{prefix}{name}" if name else "", err["msg"].removeprefix("Value error, "))
    return errors


def parse(model: type[BaseModel], data: dict[str, Any], prefix: str) -> tuple[Any, Errors]:
    try:
        return model.model_validate(data), {}
    except ValidationError as exc:
        return None, field_errors(exc, prefix)


# ---------------------------------------------------------------------------- zones


async def _zones_page(request: Request, principal: Principal, *, form: dict[str, str] | None = None,
                      errors: Errors | None = None, status: int = 200) -> HTMLResponse:
    async with deps.db(request).transaction() as session:
        zones = (await partners.read(session, principal)).zones
        used = dict((await session.execute(select(Site.zone_id, func.count()).where(
            Site.zone_id.is_not(None)).group_by(Site.zone_id))).all())
    if form is None:
        editing = next((z for z in zones if z.zone_id == request.query_params.get("zone")), None)
        form = {k: str(getattr(editing, k) or "") for k in ZONE_FIELDS} if editing else {}
    return render.page(request, "zones.html", {"zones": zones, "used": used, "f": form,
                                               "errors": errors or {}}, status=status)


@router.get("/partners/zones", response_class=HTMLResponse)
async def zones_page(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    return await _zones_page(request, principal)


@router.post("/partners/zones", response_class=HTMLResponse)
async def save_zone(request: Request, principal: Principal = Depends(gate)) -> Response:
    form = await request.form()
    values = {k: str(form.get(k) or "").strip() for k in ZONE_FIELDS}
    zone, errors = parse(ZoneIn, {k: v or None for k, v in values.items()}, "z-")
    if zone is not None:
        async with deps.db(request).transaction() as session:
            await partners.put_zone(session, principal, zone)
    if errors:
        return await _zones_page(request, principal, form=values, errors=errors, status=422)
    return RedirectResponse(f"/partners/zones?saved={zone.zone_id}", status_code=303)


@router.post("/partners/zones/{zone_id}/delete", response_class=HTMLResponse)
async def delete_zone(request: Request, zone_id: str, principal: Principal = Depends(gate)) -> Response:
    try:
        async with deps.db(request).transaction() as session:
            deleted = await partners.delete_zone(session, principal, zone_id[:100])
    except SourceError as exc:  # sites still patrol in it: move them first
        return render.message(request, "Zone in use", "; ".join(exc.problems), status=409)
    if not deleted:
        return render.message(request, "Not found", f"No zone {zone_id}.", status=404)
    return RedirectResponse(f"/partners/zones?deleted={zone_id[:100]}", status_code=303)


# ---------------------------------------------------------------------------- roster


def read_roster(form: FormData) -> list[dict[str, Any]]:
    raw = str(form.get("rows") or "0")
    rows = []
    for i in range(min(int(raw) if raw.isdigit() else 0, MAX_ROSTER)):
        row: dict[str, Any] = {k: str(form.get(f"r{i}-{k}") or "").strip() for k in ROSTER_FIELDS}
        row["remove"] = form.get(f"r{i}-remove") == "yes"
        rows.append(row)
    return rows


def validate_roster(rows: list[dict[str, Any]]) -> tuple[list[RosterEntryIn], Errors]:
    """The roster the form describes (removed and empty rows left out), or field errors."""
    entries: list[RosterEntryIn] = []
    errors: Errors = {}
    seen: set[str] = set()
    for i, row in enumerate(rows):
        if row["remove"] or not any(row[k] for k in ("entry_id", "name", "email")):
            continue
        data = {k: row[k] for k in ROSTER_FIELDS}
        data["level"] = int(data["level"]) if data["level"].isdigit() else data["level"]
        entry, problems = parse(RosterEntryIn, data, f"r{i}-")
        errors |= problems
        if entry is not None:
            if entry.entry_id in seen:
                errors[f"r{i}-entry_id"] = "another roster entry has this id"
            seen.add(entry.entry_id)
            entries.append(entry)
    return entries, errors


async def _roster_page(request: Request, principal: Principal, *,
                       rows: list[dict[str, Any]] | None = None, errors: Errors | None = None,
                       status: int = 200) -> HTMLResponse:
    async with deps.db(request).transaction() as session:
        current = (await partners.read(session, principal)).roster or []
    if rows is None:
        rows = [{k: str(getattr(e, k)) for k in ROSTER_FIELDS} for e in current]
    if not rows or any(rows[-1][k] for k in ("entry_id", "name", "email")):
        rows = [*rows, {"entry_id": "", "level": "1", "name": "", "email": "", "blank": True}]
    return render.page(request, "roster.html", {"rows": rows, "errors": errors or {}}, status=status)


@router.get("/partners/roster", response_class=HTMLResponse)
async def roster_page(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    return await _roster_page(request, principal)


@router.post("/partners/roster", response_class=HTMLResponse)
async def save_roster(request: Request, principal: Principal = Depends(gate)) -> Response:
    require(principal, *partners.EDITORS, action="edit the duty roster")
    rows = read_roster(await request.form())
    entries, errors = validate_roster(rows)
    if not errors:
        try:
            async with deps.db(request).transaction() as session:
                await partners.put_roster(session, principal, entries)
            return RedirectResponse("/partners/roster?saved=1", status_code=303)
        except SourceError as exc:
            errors = {"": "; ".join(exc.problems)}
    return await _roster_page(request, principal, rows=rows, errors=errors, status=422)
