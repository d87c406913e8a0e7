"""Playbook pages: the list with each stored version re-validated, a 30-day backtest, one
playbook's history and diffs, the YAML editor (validate and backtest a draft, then save it with
a note as a new version, exactly as `prevent playbooks apply` does), the notice a version or a
draft would send (rendered for a fictional sample site in each language) and a one-step
rollback to an earlier version."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select

from prevent.classification import Classifier
from prevent.contracts import utcnow
from prevent.platform.storage.tables import AlertRow
from prevent.rules.playbooks import diaspora_versions as diaspora
from prevent.rules.playbooks import editing, preview, store
from prevent.rules.playbooks.loader import PlaybookSet
from prevent.rules.playbooks.schema import Playbook
from prevent.users import PermissionDenied, Principal, require
from prevent.web import deps, render
from prevent.web.security import gate

router = APIRouter()
Problems = list[tuple[int | None, str]]  # (line of the text or None, message)

NEW_PLAYBOOK = """\
id: new-playbook-id
title: What this playbook responds to
owner: community-engagement-unit
description: >
  Why engagement officers want to hear about these incidents.
priority: 50
match:
  communities:
    any: [muslim]
  incident_types: [arson, armed_attack]
  min_severity: 2
  max_age_hours: 72
response:
  confirmation: {mode: required}
  notify:
    - communities: [$matched]
      channels: [email]
      template: default
"""


async def classifier(request: Request) -> Classifier:
    """The files' classifier with the diaspora map in force (what the rules stage uses)."""
    stored = await diaspora.in_force(deps.db(request))
    return await asyncio.to_thread(diaspora.cached_classifier, deps.settings(request).playbooks_dir,
                                   stored)


def can_edit(principal: Principal) -> bool:
    try:
        require(principal, *editing.EDITORS, action="edit playbooks")
    except PermissionDenied:
        return False
    return True


@router.get("/playbooks", response_class=HTMLResponse)
async def playbooks(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    since = utcnow() - timedelta(days=30)
    async with deps.db(request).transaction() as session:
        latest = await store.latest_versions(session)
        fired = dict((await session.execute(
            select(AlertRow.playbook_id, func.count()).where(AlertRow.created_at >= since)
            .group_by(AlertRow.playbook_id))).all())
    rows = []
    for row in latest:  # re-validate what is stored: the schema may have moved on since
        playbook, problems = editing.validate(row.source, f"{row.playbook_id}@v{row.version}")
        rows.append({"row": row, "playbook": playbook, "problems": problems})
    return render.page(request, "playbooks.html", {"rows": rows, "fired": fired,
                                                   "can_edit": can_edit(principal)})


@router.get("/playbooks/backtest", response_class=HTMLResponse)
async def backtest(request: Request, _p: Principal = Depends(gate)) -> HTMLResponse:
    async with deps.db(request).transaction() as session:
        latest = await store.latest_versions(session)
        items, truncated = await editing.recent_incidents(session)
    valid = []
    for row in latest:
        playbook, _problems = editing.validate(row.source, row.playbook_id)
        if playbook is not None:
            valid.append(playbook)
    playbook_set = PlaybookSet(tuple(valid), {r.playbook_id: r.version for r in latest})
    result = await asyncio.to_thread(editing.backtest_set, items, await classifier(request),
                                     playbook_set, truncated=truncated)
    return render.page(request, "playbook_backtest.html", {
        "latest": latest, "result": result, "days": editing.BACKTEST_DAYS})


async def _editor(request: Request, principal: Principal, playbook_id: str | None, *,
                  text: str | None = None, note: str = "", base_version: int | None = None,
                  problems: Problems | None = None, result: editing.Backtest | None = None,
                  checked: bool = False, conflict: str = "", draft: Playbook | None = None,
                  status: int = 200) -> HTMLResponse:
    require(principal, *editing.EDITORS, action="edit playbooks")
    current = None
    if playbook_id is not None:
        async with deps.db(request).transaction() as session:
            versions = await editing.history(session, playbook_id)
        if not versions:
            return render.message(request, "Not found", f"No playbook {playbook_id}.", status=404)
        current = versions[0]
    if text is None:
        text = current.source if current else NEW_PLAYBOOK
    if base_version is None and current is not None:
        base_version = current.version
    notice = None
    if draft is not None and checked and not problems:
        notice = await _preview(request, draft, (current.version + 1) if current else 1)
    return render.page(request, "playbook_edit.html", {
        "playbook_id": playbook_id, "current": current, "text": text, "note": note, "notice": notice,
        "base_version": base_version, "problems": problems or [], "result": result,
        "checked": checked, "conflict": conflict, "days": editing.BACKTEST_DAYS,
        "action": f"/playbooks/{playbook_id}/edit" if playbook_id else "/playbooks/new",
    }, status=status)


@router.get("/playbooks/new", response_class=HTMLResponse)
async def new_playbook(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    return await _editor(request, principal, None)


@router.post("/playbooks/new", response_class=HTMLResponse)
async def post_new_playbook(request: Request, principal: Principal = Depends(gate)) -> Response:
    return await _submit(request, principal, None)


@router.get("/playbooks/{playbook_id}", response_class=HTMLResponse)
async def playbook_detail(request: Request, playbook_id: str,
                          principal: Principal = Depends(gate)) -> HTMLResponse:
    return await _detail(request, playbook_id, principal)


async def _detail(request: Request, playbook_id: str, principal: Principal, flash: str = "", *,
                  rollback_problems: Problems | None = None, rollback_note: str = "",
                  rollback_version: int | None = None, status: int = 200) -> HTMLResponse:
    q = request.query_params
    async with deps.db(request).transaction() as session:
        versions = await editing.history(session, playbook_id[:100])
    if not versions:
        return render.message(request, "Not found", f"No playbook {playbook_id}.", status=404)
    by_number = {v.version: v for v in versions}
    shown = by_number.get(version_number(q.get("version")) or versions[0].version, versions[0])
    newer = versions[0].version
    older = versions[1].version if len(versions) > 1 else newer
    a, b = version_number(q.get("from")) or older, version_number(q.get("to")) or newer
    diff = None
    if a in by_number and b in by_number:
        diff = editing.unified_diff(by_number[a].source, by_number[b].source,
                                    f"{playbook_id} v{a}", f"{playbook_id} v{b}")
    playbook, problems = editing.validate(shown.source, f"{playbook_id}@v{shown.version}")
    notice = await _preview(request, playbook, shown.version) if playbook is not None else None
    return render.page(request, "playbook.html", {
        "playbook_id": playbook_id, "versions": versions, "shown": shown, "problems": problems,
        "diff": diff, "diff_from": a, "diff_to": b, "can_edit": can_edit(principal),
        "flash": flash, "notice": notice, "in_force": newer,
        "rollback_problems": rollback_problems or [], "rollback_note": rollback_note,
        "rollback_version": rollback_version}, status=status)


async def _preview(request: Request, playbook: Playbook, version: int) -> preview.Preview:
    """The notice ``playbook`` would send, for a fictional sample site (never a real one)."""
    async with deps.db(request).transaction() as session:
        site = await preview.sample_site(session, playbook)
    settings = deps.settings(request)
    return await asyncio.to_thread(preview.render_preview, playbook, version, site,
                                   _templates(request), time_zone=settings.time_zone,
                                   sms_max_segments=settings.sms_max_segments)


@router.get("/playbooks/{playbook_id}/edit", response_class=HTMLResponse)
async def edit_playbook(request: Request, playbook_id: str,
                        principal: Principal = Depends(gate)) -> HTMLResponse:
    return await _editor(request, principal, playbook_id[:100])


@router.post("/playbooks/{playbook_id}/edit", response_class=HTMLResponse)
async def post_edit_playbook(request: Request, playbook_id: str,
                             principal: Principal = Depends(gate)) -> Response:
    return await _submit(request, principal, playbook_id[:100])


def _draft_id(text: str) -> str:
    """The id of a new playbook just saved from ``text`` (which save_draft validated)."""
    draft = editing.validate(text, "draft")[0]
    if draft is None:
        raise RuntimeError("a saved playbook draft no longer validates")
    return draft.id


async def _submit(request: Request, principal: Principal, playbook_id: str | None) -> Response:
    """One form, two buttons: "Validate and backtest" (nothing stored) and "Save"."""
    form, keep = await draft_form(request)
    text, note, base_version = keep["text"], keep["note"], keep["base_version"]
    if form.get("action") == "save":
        try:
            async with deps.db(request).transaction() as session:
                version = await editing.save_draft(session, principal, text, note=note,
                                                   playbook_id=playbook_id, base_version=base_version,
                                                   templates_dir=_templates(request))
        except editing.EditError as exc:
            return await _editor(request, principal, playbook_id, problems=exc.problems, status=422,
                                 **keep)
        except editing.Conflict as exc:
            return await _editor(request, principal, playbook_id, conflict=str(exc), status=409,
                                 **keep)
        deps.kick(request)  # publish the prevent.playbooks.v1 announcement now
        saved_id = playbook_id or _draft_id(text)
        suffix = f"?saved={version}" if version else "?unchanged=1"
        return RedirectResponse(f"/playbooks/{saved_id}/saved{suffix}", status_code=303)
    require(principal, *editing.EDITORS, action="edit playbooks")
    async with deps.db(request).transaction() as session:
        latest = {r.playbook_id: r for r in await store.latest_versions(session)}
        items, truncated = await editing.recent_incidents(session)
    draft, problems = editing.check_draft(text, playbook_id=playbook_id, existing=set(latest),
                                          templates_dir=_templates(request))
    result = None
    if draft is not None:
        stored_row = latest.get(draft.id)
        stored = editing.validate(stored_row.source, draft.id)[0] if stored_row else None
        result = await asyncio.to_thread(editing.backtest_draft, items, await classifier(request),
                                         draft, stored, truncated=truncated)
    return await _editor(request, principal, playbook_id, problems=problems, result=result,
                         checked=True, draft=draft, status=422 if problems else 200, **keep)


@router.post("/playbooks/{playbook_id}/rollback", response_class=HTMLResponse)
async def post_rollback(request: Request, playbook_id: str, principal: Principal = Depends(gate)
                        ) -> Response:
    """Store an earlier version's text again as the newest version, in one step."""
    playbook_id = playbook_id[:100]
    form = await request.form()
    version = version_number(str(form.get("version") or ""))
    note = str(form.get("note") or "")
    require(principal, *editing.EDITORS, action="roll back playbooks")
    if version is None:
        return render.message(request, "Not found", f"No such version of {playbook_id}.",
                              status=404)
    try:
        async with deps.db(request).transaction() as session:
            stored = await editing.rollback(
                session, principal, playbook_id, version, note=note,
                base_version=version_number(str(form.get("base_version") or "")),
                templates_dir=_templates(request))
    except LookupError:
        return render.message(request, "Not found", f"No version {version} of {playbook_id}.",
                              status=404)
    except editing.EditError as exc:
        return await _detail(request, playbook_id, principal, rollback_problems=exc.problems,
                             rollback_note=note, rollback_version=version, status=422)
    except editing.Conflict as exc:
        return render.message(request, "Conflict", f"Not rolled back: {exc}.", status=409)
    deps.kick(request)  # publish the prevent.playbooks.v1 announcement now, as a save does
    suffix = f"?saved={stored}&restored={version}" if stored else f"?unchanged=1&restored={version}"
    return RedirectResponse(f"/playbooks/{playbook_id}/saved{suffix}", status_code=303)


@router.get("/playbooks/{playbook_id}/saved", response_class=HTMLResponse)
async def saved(request: Request, playbook_id: str, principal: Principal = Depends(gate)
                ) -> HTMLResponse:
    """After post/redirect/get: the detail page with a confirmation."""
    q = request.query_params
    version, restored = version_number(q.get("saved")), version_number(q.get("restored"))
    if version and restored:
        text = (f"Version {restored} of {playbook_id} is back in force, stored as version "
                f"{version}; running rules consumers switch to it when they receive the "
                "announcement.")
    elif version:
        text = (f"Saved version {version} of {playbook_id}; running rules consumers switch to "
                "it when they receive the announcement.")
    elif restored:
        text = f"Version {restored} is the text in force already: nothing was stored."
    else:
        text = f"The draft is the same as the stored version of {playbook_id}: nothing was stored."
    return await _detail(request, playbook_id[:100], principal, flash=text)


def _templates(request: Request) -> Path:
    """The notice templates a draft's ``template:`` must name, as `prevent playbooks check`."""
    return deps.settings(request).playbooks_dir / "templates"


def version_number(value: str | None) -> int | None:
    """A version number from a query or form field; None when it is not one."""
    return int(value) if value and value.isdigit() and len(value) < 9 else None


async def draft_form(request: Request) -> tuple[Any, dict[str, Any]]:
    """An editor's posted form, and what the page keeps of it when it is shown again: the
    text (CRLF as LF), the note and the version it was based on."""
    form = await request.form()
    return form, {"text": str(form.get("source") or "").replace("\r\n", "\n"),
                  "note": str(form.get("note") or ""),
                  "base_version": version_number(str(form.get("base_version") or ""))}
