"""Silences and dead letters in the console (issue 22, defect 12).

* ``/silences``: every silence (active, upcoming, ended) for any role; duty inspectors
  create one (matchers, end time in the unit's zone, comment) and expire one early. The
  domain (``prevent.rules.suppression``) checks the role and audits, as for the API.
* ``/deadletters``: what ``prevent deadletters list`` shows, for duty inspectors and
  administrators; administrators replay chosen ones to their origin topic
  (``prevent deadletters replay``). The broker is the process's own (``prevent up``'s
  embedded one included), so the default set-up has a page to point at.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from prevent.contracts import utcnow
from prevent.platform import deadletters
from prevent.rules import suppression
from prevent.users import Principal, Role, require
from prevent.web import deps, render
from prevent.web.security import gate

router = APIRouter()
DEADLETTER_READERS = (Role.DUTY_INSPECTOR, Role.ADMIN)
DEADLETTER_REPLAYERS = (Role.ADMIN,)


async def _silences_page(request: Request, principal: Principal, *, problems: list[str] | None = None,
                         form: dict[str, str] | None = None, status: int = 200) -> HTMLResponse:
    now = utcnow()
    async with deps.db(request).transaction() as session:
        rows = await suppression.list_silences(session)
    return render.page(request, "silences.html", {
        "silences": [suppression.silence_view(r, now) | {"upcoming": r.starts_at > now,
                                                          "starts": r.starts_at, "ends": r.ends_at}
                     for r in rows],
        "can_manage": principal.role is Role.DUTY_INSPECTOR, "problems": problems,
        "form": form or {}, "done": request.query_params.get("done")}, status=status)


@router.get("/silences", response_class=HTMLResponse)
async def silences(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    return await _silences_page(request, principal)


def _local(text: str, zone: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=render.zone(zone))


@router.post("/silences", response_class=HTMLResponse)
async def create_silence(request: Request, principal: Principal = Depends(gate)) -> Response:
    require(principal, Role.DUTY_INSPECTOR, action="create silences")
    form = {k: str(v).strip()[:2000] for k, v in (await request.form()).items() if k != "csrf_token"}
    zone = deps.settings(request).time_zone
    problems: list[str] = []
    try:
        ends = _local(form.get("ends_at", ""), zone) if form.get("ends_at") else \
            utcnow() + timedelta(hours=float(form.get("hours") or 0))
    except ValueError:
        ends, problems = utcnow(), ["ends at: give a date and time, or hours from now"]
    matchers = {k: form[k] for k in ("playbook", "community", "cluster", "keyword") if form.get(k)}
    if not problems:
        try:
            silence = suppression.SilenceIn(matchers=suppression.Matchers(**matchers), ends_at=ends,
                                            comment=form.get("comment", ""))
            async with deps.db(request).transaction() as session:
                await suppression.create_silence(session, principal, silence)
        except ValidationError as exc:
            problems = [f"{'.'.join(str(p) for p in e['loc']) or 'silence'}: {e['msg']}"
                        for e in exc.errors()]
        except suppression.SilenceError as exc:
            problems = [str(exc)]
    if problems:
        return await _silences_page(request, principal, problems=problems, form=form, status=422)
    return RedirectResponse("/silences?done=created", status_code=303)


@router.post("/silences/{silence_id}/expire")
async def expire_silence(request: Request, silence_id: str, principal: Principal = Depends(gate)
                         ) -> Response:
    form = await request.form()
    try:
        async with deps.db(request).transaction() as session:
            await suppression.expire_silence(session, principal, silence_id[:64],
                                             reason=str(form.get("reason", "")).strip()[:2000] or None)
    except suppression.SilenceError as exc:
        return render.message(request, "Silence not found", str(exc), status=404)
    return RedirectResponse("/silences?done=expired", status_code=303)


def _bootstrap(request: Request) -> str | None:
    return deps.settings(request).kafka_bootstrap or getattr(deps.state(request), "bootstrap", None)


@router.get("/deadletters", response_class=HTMLResponse)
async def dead_letters(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    require(principal, *DEADLETTER_READERS, action="read dead letters")
    bootstrap, letters, error = _bootstrap(request), [], None
    topic = request.query_params.get("topic", "").strip()[:200] or None
    if bootstrap is None:
        error = "This console has no Kafka broker to read the dead-letter topic from."
    else:
        try:
            letters = deadletters.select(await deadletters.read_all(bootstrap, limit_s=5.0),
                                         origin_topic=topic)
        except Exception as exc:  # noqa: BLE001 - the page says why, it does not fail
            error = f"Could not read the dead-letter topic: {exc}"
    return render.page(request, "deadletters.html", {
        "letters": [d.summary() | {"partition": d.partition} for d in letters], "error": error,
        "topic": topic or "", "can_replay": principal.role in DEADLETTER_REPLAYERS,
        "done": request.query_params.get("replayed")})


@router.post("/deadletters/replay")
async def replay_dead_letters(request: Request, principal: Principal = Depends(gate)) -> Response:
    require(principal, *DEADLETTER_REPLAYERS, action="replay dead letters")
    form = await request.form()
    bootstrap = _bootstrap(request)
    if bootstrap is None:
        return render.message(request, "Nothing replayed", "no Kafka broker", status=503)
    wanted = {str(v) for v in form.getlist("letter")}  # "partition:offset" on the dead-letter topic
    letters = [d for d in await deadletters.read_all(bootstrap, limit_s=5.0)
               if f"{d.partition}:{d.offset}" in wanted]
    if not letters:
        return render.message(request, "Nothing replayed", "tick the dead letters to replay",
                              status=422)
    try:
        count = await deadletters.replay(bootstrap, letters)
    except ValueError as exc:
        return render.message(request, "Nothing replayed", str(exc), status=422)
    from prevent import audit

    async with deps.db(request).transaction() as session:
        await audit.record(session, actor=principal.name, action="deadletters.replay",
                           subject="deadletters", after={"letters": sorted(wanted), "count": count},
                           key=f"deadletters:{principal.name}:{utcnow().isoformat()}")
    return RedirectResponse(f"/deadletters?replayed={count}", status_code=303)
