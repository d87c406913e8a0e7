"""The duty inspector's pages: the alert queue and the alert detail with its decisions.

Forms post here (CSRF-checked by the session source) and redirect back (post/redirect/get),
so every decision works without JavaScript. The domain (``prevent.lifecycle``) checks the
role: a viewer who posts a confirmation anyway gets 403 from the same check the API uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from notifiers import patrol
from prevent import alerts, lifecycle
from prevent.console import deps, render
from prevent.console.security import gate
from prevent.contracts import Alert, Scope
from prevent.users import Principal, Role

router = APIRouter()
STATUSES = ("proposed", "confirmed", "closed", "dismissed", "expired")


def queue_order(alert: Alert) -> tuple[int, int, float]:
    """Proposed first (they wait for a decision), then the most severe, then the oldest."""
    return (0 if alert.status.value == "proposed" else 1, -alert.severity,
            alert.created_at.timestamp())


async def queue_alerts(request: Request, status: str, community: str, playbook: str) -> list[Alert]:
    async with deps.db(request).transaction() as session:
        found = await lifecycle.list_alerts(session, status=[status] if status else None,
                                            playbook=playbook or None, community=community or None)
    return sorted(found, key=queue_order)


def _filters(request: Request) -> dict[str, str]:
    q = request.query_params
    return {k: q.get(k, "").strip()[:100] for k in ("status", "community", "playbook")}


@router.get("/", response_class=HTMLResponse)
async def queue(request: Request, _p: Principal = Depends(gate)) -> HTMLResponse:
    filters = _filters(request)
    found = await queue_alerts(request, **filters)
    return render.page(request, "queue.html", {"alerts": found, "filters": filters,
                                               "statuses": STATUSES})


@router.get("/alerts/rows", response_class=HTMLResponse)
async def queue_rows(request: Request, _p: Principal = Depends(gate)) -> HTMLResponse:
    """The queue's table body alone: what the live update swaps in."""
    found = await queue_alerts(request, **_filters(request))
    return render.page(request, "queue_rows.html", {"alerts": found})


def highlighted(text: str, spans: list[tuple[int, int]]) -> list[tuple[str, bool]]:
    """``text`` cut into (segment, is_evidence) pieces; overlapping spans are merged."""
    pieces: list[tuple[str, bool]] = []
    cursor = 0
    for start, end in sorted(spans):
        start = max(start, cursor)
        if end <= start or start >= len(text):
            continue
        pieces += [(text[cursor:start], False), (text[start:end], True)]
        cursor = end
    pieces.append((text[cursor:], False))
    return [p for p in pieces if p[0]]


def evidence_view(incident: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    evidence = (incident.get("classification") or {}).get("evidence") or []
    fields = {}
    for field in ("title", "summary"):
        spans = [(int(e["start"]), int(e["end"])) for e in evidence
                 if e.get("field") == field and "start" in e and "end" in e]
        fields[field] = highlighted(str(payload.get(field) or ""), spans)
    return {"fields": fields, "rules": sorted({f"{e.get('rule')}: {e.get('term')}" for e in evidence})}


async def _detail(request: Request, alert_id: str) -> dict[str, Any]:
    from prevent.storage.tables import IncidentRow  # local: only the detail needs the raw text

    async with deps.db(request).transaction() as session:
        view = await lifecycle.detail(session, alert_id)
        rows = {r.incident_id: r for r in (await session.execute(
            IncidentRow.__table__.select().where(
                IncidentRow.incident_id.in_([i["incident_id"] for i in view["incidents"]])))).all()}
    for incident in view["incidents"]:
        row = rows.get(incident["incident_id"])
        payload = dict(row.payload) if row is not None else {}
        incident["outlet"] = payload.get("feed_id") or incident["feed_id"]
        incident["evidence"] = evidence_view(incident, payload)
    return view


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
async def detail(request: Request, alert_id: str, principal: Principal = Depends(gate)) -> HTMLResponse:
    try:
        view = await _detail(request, alert_id)
    except alerts.AlertNotFound as exc:
        return render.message(request, "Alert not found", str(exc), status=404)
    recipients = view["preview"]["recipients"]
    return render.page(request, "alert.html", {
        "v": view, "a": view["alert"], "can_decide": principal.role is Role.DUTY_INSPECTOR,
        "channels": sorted({r["channel"] for r in recipients}),
        "site_names": {r["site_id"]: r["site_name"] for r in recipients}
        | {p["site_id"]: p["site_name"] for p in view["preview"]["patrols"]},
        "dispositions": alerts.DISPOSITIONS, "error": request.query_params.get("error")})


def _excluded(offered: list[str], kept: list[str]) -> tuple[str, ...]:
    return tuple(x for x in offered if x not in set(kept))


async def _decide(request: Request, principal: Principal, alert_id: str, action: str,
                  **kwargs: Any) -> Response:
    try:
        await lifecycle.decide(deps.db(request), principal, alert_id, action=action, **kwargs)
    except alerts.AlertNotFound as exc:
        return render.message(request, "Alert not found", str(exc), status=404)
    except (alerts.AlertConflict, alerts.IllegalTransition) as exc:
        return render.message(request, "Someone else decided first", str(exc), status=409)
    except alerts.AlertError as exc:
        return render.message(request, "Could not record the decision", str(exc), status=422)
    deps.kick(request)
    return RedirectResponse(f"/alerts/{alert_id}", status_code=303)


def _revision(form: Any) -> int | None:
    text = str(form.get("revision", ""))
    return int(text) if text.isdigit() and int(text) >= 1 else None


@router.post("/alerts/{alert_id}/confirm")
async def confirm(request: Request, alert_id: str, principal: Principal = Depends(gate)) -> Response:
    form = await request.form()
    revision = _revision(form)
    note = str(form.get("note", "")).strip()[:4000] or None
    if revision is None:
        return render.message(request, "Incomplete form", "the revision is missing", status=422)
    scope = Scope(
        excluded_sites=_excluded(form.getlist("offered_site"), form.getlist("site")),
        excluded_channels=_excluded(form.getlist("offered_channel"), form.getlist("channel")),
        excluded_patrol_sites=_excluded(form.getlist("offered_patrol"), form.getlist("patrol")))
    return await _decide(request, principal, alert_id, "confirm", expected_revision=revision,
                         note=note, scope=scope)


@router.post("/alerts/{alert_id}/dismiss")
async def dismiss(request: Request, alert_id: str, principal: Principal = Depends(gate)) -> Response:
    form = await request.form()
    revision, note = _revision(form), str(form.get("note", "")).strip()[:4000]
    disposition = str(form.get("disposition", ""))
    if revision is None or not note or disposition not in alerts.DISPOSITIONS:
        return render.message(request, "Incomplete form",
                              "Dismissing needs a disposition and a reason.", status=422)
    return await _decide(request, principal, alert_id, "dismiss", expected_revision=revision,
                         note=note, disposition=disposition)


@router.post("/alerts/{alert_id}/close")
async def close(request: Request, alert_id: str, principal: Principal = Depends(gate)) -> Response:
    form = await request.form()
    revision = _revision(form)
    if revision is None:
        return render.message(request, "Incomplete form", "the revision is missing", status=422)
    return await _decide(request, principal, alert_id, "close", expected_revision=revision,
                         note=str(form.get("note", "")).strip()[:4000] or None)


@router.post("/alerts/{alert_id}/patrols/extend")
async def extend_patrols(request: Request, alert_id: str, principal: Principal = Depends(gate)) -> Response:
    """The stand-down review's "extend the plan": every assigned patrol of the alert runs
    longer. The form carries the end it showed, so a second click extends nothing."""
    form = await request.form()
    hours = str(form.get("hours", "")).strip()
    try:
        seen = datetime.fromisoformat(str(form.get("until", "")))
    except ValueError:
        return render.message(request, "Incomplete form", "the plan's end is missing", status=422)
    if not hours.isdigit():
        return render.message(request, "Incomplete form", "give the extension in whole hours", status=422)
    try:
        async with deps.db(request).transaction() as session:
            await patrol.extend(session, principal, alert_id, hours=int(hours), seen_until=seen,
                                note=str(form.get("note", ""))[:4000])
    except patrol.PatrolConflict as exc:
        return render.message(request, "The plan changed", str(exc), status=409)
    except patrol.PatrolError as exc:
        return render.message(request, "Patrols not extended", str(exc), status=422)
    deps.kick(request)
    return RedirectResponse(f"/alerts/{alert_id}?extended={hours}", status_code=303)
