"""The duty inspector's pages: the alert queue and the alert detail with its decisions.

Forms post here (CSRF-checked by the session source) and redirect back (post/redirect/get),
so every decision works without JavaScript. The domain (``prevent.alerts.lifecycle``) checks the
role: a viewer who posts a confirmation anyway gets 403 from the same check the API uses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from notifiers import patrol
from prevent.alerts import lifecycle
from prevent.alerts import states as alerts
from prevent.contracts import Alert, Scope, utcnow
from prevent.users import Principal, Role
from prevent.web import claims, deps, notices, render, security, situation
from prevent.web.security import gate

router = APIRouter()
STATUSES = ("proposed", "confirmed", "closed", "dismissed", "expired")


def queue_order(alert: Alert) -> tuple[int, int, float]:
    """Proposed first (they wait for a decision), then the most severe, then the oldest."""
    return (0 if alert.status.value == "proposed" else 1, -alert.severity,
            alert.created_at.timestamp())


async def queue_alerts(request: Request, status: str, community: str, playbook: str,
                       exercises: str = "") -> list[Alert]:
    """The queue's alerts. With no status chosen, the default view is what needs deciding
    now: proposed alerts; ``status=all`` shows every status. Exercises only when asked."""
    wanted = None if status == "all" else [status or "proposed"]
    async with deps.db(request).transaction() as session:
        found = await lifecycle.list_alerts(session, status=wanted, playbook=playbook or None,
                                            community=community or None,
                                            exercise=None if exercises else False)
    return sorted(found, key=queue_order)


def _filters(request: Request) -> dict[str, str]:
    q = request.query_params
    return {k: q.get(k, "").strip()[:100] for k in ("status", "community", "playbook", "exercises")}


async def queue_context(request: Request, principal: Principal, found: list[Alert]
                        ) -> dict[str, Any]:
    """Per alert: age, the next escalation and whether one fired, urgency and any claim; and
    how many alerts wait for a decision now (exercises counted apart)."""
    now = utcnow()
    ids = [a.alert_id for a in found]
    async with deps.db(request).transaction() as session:
        due = await claims.escalations(session, ids)
        held = await claims.active_claims(session, ids, now, deps.settings(request).claim_minutes)
        waiting = await claims.undecided_counts(session)
        urgent = await claims.urgent_reports(session, found)
    rows = []
    for a in found:
        next_due, fired = due.get(a.alert_id, (None, 0))
        proposed = a.status.value == "proposed"
        rows.append({"a": a, "age": claims.span(now - a.created_at),
                     "next_due": next_due if proposed else None,
                     "to_escalation": claims.span(next_due - now) if proposed and next_due else None,
                     "overdue": bool(proposed and next_due and next_due <= now),
                     "escalated": fired if proposed else 0,
                     "urgent": a.severity >= claims.URGENT or a.alert_id in urgent,
                     "claim": held.get(a.alert_id) if proposed else None})
    return {"rows": rows, "waiting": waiting, "me_name": principal.name}


@router.get("/", response_class=HTMLResponse)
async def queue(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    filters = _filters(request)
    found = await queue_alerts(request, **filters)
    return render.page(request, "queue.html", {"alerts": found, "filters": filters,
                                               "statuses": STATUSES,
                                               **await queue_context(request, principal, found)})


@router.get("/alerts/rows", response_class=HTMLResponse)
async def queue_rows(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    """The queue's table body alone: what the live update swaps in."""
    found = await queue_alerts(request, **_filters(request))
    return render.page(request, "queue_rows.html", {
        "alerts": found, **await queue_context(request, principal, found)})


@router.post("/alerts/{alert_id}/claim")
async def claim(request: Request, alert_id: str, principal: Principal = Depends(gate)) -> Response:
    """"I'm on it": shown to the other inspectors until the alert is decided, the claim is
    released, or it lapses (PREVENT_CLAIM_MINUTES)."""
    form = await request.form()
    release = str(form.get("release", "")) == "1"
    try:
        async with deps.db(request).transaction() as session:
            await claims.claim(session, principal, alert_id[:64], release=release,
                               minutes=deps.settings(request).claim_minutes)
    except alerts.AlertNotFound as exc:
        return render.message(request, "Alert not found", str(exc), status=404)
    except claims.ClaimError as exc:
        return render.message(request, "Not claimed", str(exc), status=409)
    back = "/" if str(form.get("next", "")) == "/" else f"/alerts/{alert_id}"
    return RedirectResponse(back, status_code=303)


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
    from prevent.platform.storage.tables import IncidentRow  # local: only the detail needs the raw text

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


async def _situation(request: Request, alert_id: str, principal: Principal,
                     site_ids: list[str]) -> dict[str, Any]:
    async with deps.db(request).transaction() as session:
        return await situation.situation(session, alert_id, site_ids=site_ids, principal=principal)


def map_data(request: Request, picture: dict[str, Any]) -> dict[str, Any]:
    """What static/alert_map.js draws: the event, each site coloured by state, the tiles."""
    settings = deps.settings(request)
    return {"tiles": settings.map_tile_url, "attribution": settings.map_tile_attribution,
            "event": picture["event"],
            "sites": [{"id": s["site_id"], "name": s["name"], "lat": s["lat"], "lon": s["lon"],
                       "state": s["state"], "label": s["state_label"]}
                      for s in picture["sites"] if s["lat"] is not None and s["lon"] is not None]}


def tile_origin(url: str) -> str | None:
    """The CSP source of a Leaflet tile URL template (``{s}.`` subdomains as ``*.``)."""
    parts = urlsplit(url.replace("{s}", "x"))
    host = parts.netloc.replace("x.", "*.", 1) if "{s}." in url else parts.netloc
    if parts.scheme not in ("http", "https") or not re.fullmatch(r"[A-Za-z0-9.*:\[\]-]+", host):
        return None
    return f"{parts.scheme}://{host}"


def _with_tiles_csp(request: Request, response: HTMLResponse) -> HTMLResponse:
    """The console's CSP, with the configured tile server allowed as an image source."""
    origin = tile_origin(deps.settings(request).map_tile_url)
    if origin:
        response.headers["content-security-policy"] = security.CSP.replace(
            "img-src 'self' data:", f"img-src 'self' data: {origin}")
    return response


DECIDED = {"confirm": "Alert confirmed: notices and patrols are going out; their progress shows below.",
           "dismiss": "Alert dismissed.", "close": "Alert closed: all-clears are going out."}


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
async def detail(request: Request, alert_id: str, principal: Principal = Depends(gate)) -> HTMLResponse:
    try:
        view = await _detail(request, alert_id)
    except alerts.AlertNotFound as exc:
        return render.message(request, "Alert not found", str(exc), status=404)
    recipients = view["preview"]["recipients"]
    picture = await _situation(request, alert_id, principal, list(view["preview"]["sites"]))
    scope = view["alert"].get("scope") or {}
    async with deps.db(request).transaction() as session:
        held = (await claims.active_claims(session, [alert_id], utcnow(),
                                           deps.settings(request).claim_minutes)).get(alert_id)
    response = render.page(request, "alert.html", {
        "v": view, "a": view["alert"], "can_decide": principal.role is Role.DUTY_INSPECTOR,
        "channels": sorted({r["channel"] for r in recipients}),
        "site_names": {s["site_id"]: s["name"] for s in picture["sites"]}
        | {r["site_id"]: r["site_name"] for r in recipients}
        | {p["site_id"]: p["site_name"] for p in view["preview"]["patrols"]},
        "dispositions": alerts.DISPOSITIONS, "error": request.query_params.get("error"),
        "decided": DECIDED.get(request.query_params.get("decided", "")),
        "recorded": request.query_params.get("recorded"),
        "resent": request.query_params.get("resent"),
        "excluded": {"sites": set(scope.get("excluded_sites") or ()),
                     "channels": set(scope.get("excluded_channels") or ()),
                     "patrols": set(scope.get("excluded_patrol_sites") or ())},
        "s": picture, "map": map_data(request, picture),
        "claim": held if view["alert"]["status"] == "proposed" else None,
        "can_record": principal.role in (Role.DUTY_INSPECTOR, Role.ADMIN),
        "can_resend": principal.role in notices.RESENDERS})
    return _with_tiles_csp(request, response)


@router.get("/alerts/{alert_id}/situation", response_class=HTMLResponse)
async def situation_fragment(request: Request, alert_id: str,
                             principal: Principal = Depends(gate)) -> HTMLResponse:
    """The live part of the alert page (site states, notices, patrols, timeline) alone: what
    the page swaps in when its stream says something changed."""
    try:
        view = await _detail(request, alert_id)
    except alerts.AlertNotFound as exc:
        return render.message(request, "Alert not found", str(exc), status=404)
    picture = await _situation(request, alert_id, principal, list(view["preview"]["sites"]))
    return render.page(request, "alert_situation.html", {
        "v": view, "a": view["alert"], "s": picture, "map": map_data(request, picture),
        "can_record": principal.role in (Role.DUTY_INSPECTOR, Role.ADMIN),
        "can_resend": principal.role in notices.RESENDERS})


def _excluded(offered: Sequence[str | UploadFile], kept: Sequence[str | UploadFile]) -> tuple[str, ...]:
    """The offered values not kept; a form field's value is text (a file sent in one is none)."""
    return tuple(x for x in offered if isinstance(x, str) and x not in set(kept))


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
    return RedirectResponse(f"/alerts/{alert_id}?decided={action}", status_code=303)


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
