"""The diaspora map pages: the map in force and its links (with the partner sites that serve
each country and region), every stored version with its author, time and note, diffs between
versions, the YAML editor (validate a draft, see what it changes, then save it with a note as
a new version) and rollback to an earlier version.

Engagement officers (and administrators) edit; every role reads. A saved version is
announced on ``prevent.playbooks.v1`` and running rules consumers classify with it from
their next batch, without a restart (``prevent.rules.playbooks.diaspora_versions``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from prevent.classification.diaspora import DIASPORA_FILE, DiasporaFile
from prevent.partners import edits as partners
from prevent.partners import site_diasporas
from prevent.platform.storage.tables import Site
from prevent.rules.playbooks import diaspora_versions as diaspora
from prevent.users import PermissionDenied, Principal, require
from prevent.web import deps, render
from prevent.web.playbook_editor import draft_form, version_number
from prevent.web.security import gate

router = APIRouter()
Problems = list[tuple[int | None, str]]  # (line of the text or None, message)


def can_edit(principal: Principal) -> bool:
    try:
        require(principal, *diaspora.EDITORS, action="edit the diaspora map")
    except PermissionDenied:
        return False
    return True


def _directory(request: Request) -> Path:
    return deps.settings(request).playbooks_dir


def _known(request: Request) -> frozenset[str]:
    return diaspora.known_communities(_directory(request))


def can_open_sites(principal: Principal) -> bool:
    """Whether the site names may link to the site editor (the registry's readers)."""
    try:
        require(principal, *partners.EDITORS, action="read the partner registry")
    except PermissionDenied:
        return False
    return True


async def _serving(request: Request, data: DiasporaFile | None
                   ) -> tuple[dict[str, list[tuple[str, str]]], list[tuple[str, str, list[tuple[str, str]]]]]:
    """The partner sites that serve each country and region (``sites.diasporas``): by code,
    (site id, name) in name order; and, apart, what sites serve that the map shown does not
    list (code, label, sites): a country the map has no entry for, or a region it dropped.
    Site ids and names only: no contact details."""
    async with deps.db(request).transaction() as session:
        rows = (await session.execute(select(Site.site_id, Site.name, Site.diasporas)
                                      .order_by(Site.name, Site.site_id))).all()
    serving: dict[str, list[tuple[str, str]]] = {}
    for site_id, name, codes in rows:
        for code in site_diasporas.as_list(codes):
            serving.setdefault(code, []).append((site_id, name))
    listed = ({c.country for c in data.countries} | {r.id for r in data.regions}) if data else set()
    places = site_diasporas.places_from_text(None)
    other = []
    for code in sorted(set(serving) - listed):
        if len(code) == 2 and site_diasporas.is_country(code):
            label = f"{places.name(code)} ({code}): a country this map does not list"
        else:
            label = f"{code}: not a region of this version of the map"
        other.append((code, label, serving[code]))
    return serving, other


@router.get("/diaspora", response_class=HTMLResponse)
async def diaspora_page(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    return await _detail(request, principal)


async def _detail(request: Request, principal: Principal, *, flash: str = "",
                  problems: Problems | None = None, rollback_note: str = "", version: int | None = None,
                  status: int = 200) -> HTMLResponse:
    q = request.query_params
    async with deps.db(request).transaction() as session:
        versions = await diaspora.history(session)
    by_number = {v.version: v for v in versions}
    shown = by_number.get(version or version_number(q.get("version")) or 0, versions[0] if versions else None)
    if shown is not None:
        source, name = shown.source, f"diaspora@v{shown.version}"
    else:  # nothing stored yet: the file is in force
        source, name = diaspora.file_source(_directory(request)) or "", DIASPORA_FILE
    data, invalid = diaspora.validate(source, _known(request), name)
    diff = changes = None
    a = b = None
    if versions:
        newer = versions[0].version
        older = versions[1].version if len(versions) > 1 else newer
        a, b = version_number(q.get("from")) or older, version_number(q.get("to")) or newer
        if a in by_number and b in by_number:
            diff = diaspora.unified_diff(by_number[a].source, by_number[b].source,
                                         f"diaspora v{a}", f"diaspora v{b}")
            old, new = (diaspora.read_unchecked(by_number[n].source) for n in (a, b))
            changes = diaspora.link_changes(old, new) if old is not None and new is not None else []
    serving, other = await _serving(request, data)
    return render.page(request, "diaspora.html", {
        "serving": serving, "other_served": other, "can_open_sites": can_open_sites(principal),
        "versions": versions, "shown": shown, "source": source, "data": data, "invalid": invalid,
        "diff": diff, "changes": changes, "diff_from": a, "diff_to": b,
        "can_edit": can_edit(principal), "flash": flash, "problems": problems or [],
        "rollback_note": rollback_note, "country": (q.get("country") or "").strip().upper()[:2],
        "in_force": versions[0].version if versions else None}, status=status)


async def _editor(request: Request, principal: Principal, *, text: str | None = None, note: str = "",
                  base_version: int | None = None, problems: Problems | None = None,
                  checked: bool = False, conflict: str = "", status: int = 200) -> HTMLResponse:
    require(principal, *diaspora.EDITORS, action="edit the diaspora map")
    async with deps.db(request).transaction() as session:
        current = await diaspora.latest(session)
    stored_text = current.source if current else diaspora.file_source(_directory(request)) or ""
    if text is None:
        text = stored_text
    if base_version is None and current is not None:
        base_version = current.version
    diff = changes = None
    if checked and not problems:
        diff = diaspora.unified_diff(stored_text, text, "in force", "draft")
        old = diaspora.read_unchecked(stored_text)
        new = diaspora.read_unchecked(text)
        changes = diaspora.link_changes(old, new) if new is not None else []
    return render.page(request, "diaspora_edit.html", {
        "current": current, "text": text, "note": note, "base_version": base_version,
        "problems": problems or [], "checked": checked, "conflict": conflict, "diff": diff,
        "changes": changes}, status=status)


@router.get("/diaspora/edit", response_class=HTMLResponse)
async def edit(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    return await _editor(request, principal)


@router.post("/diaspora/edit", response_class=HTMLResponse)
async def post_edit(request: Request, principal: Principal = Depends(gate)) -> Response:
    """One form, two buttons: "Validate and compare" (nothing stored) and "Save"."""
    form, keep = await draft_form(request)
    text, note, base_version = keep["text"], keep["note"], keep["base_version"]
    if form.get("action") == "save":
        try:
            async with deps.db(request).transaction() as session:
                version = await diaspora.save_draft(session, principal, text, note=note,
                                                    base_version=base_version, known=_known(request))
        except diaspora.EditError as exc:
            return await _editor(request, principal, problems=exc.problems, status=422, **keep)
        except diaspora.Conflict as exc:
            return await _editor(request, principal, conflict=str(exc), status=409, **keep)
        deps.kick(request)  # publish the announcement now
        return RedirectResponse(f"/diaspora/saved?saved={version}" if version else "/diaspora/saved",
                                status_code=303)
    require(principal, *diaspora.EDITORS, action="edit the diaspora map")
    _, problems = diaspora.validate(text, _known(request))
    return await _editor(request, principal, problems=problems, checked=True,
                         status=422 if problems else 200, **keep)


@router.post("/diaspora/rollback", response_class=HTMLResponse)
async def post_rollback(request: Request, principal: Principal = Depends(gate)) -> Response:
    form = await request.form()
    version = version_number(str(form.get("version") or ""))
    note = str(form.get("note") or "")
    if version is None:
        return render.message(request, "Not found", "No such version of the diaspora map.", status=404)
    try:
        async with deps.db(request).transaction() as session:
            stored = await diaspora.rollback(session, principal, version, note=note,
                                             base_version=version_number(str(form.get("base_version") or "")),
                                             known=_known(request))
    except LookupError:
        return render.message(request, "Not found", f"No version {version} of the diaspora map.",
                              status=404)
    except diaspora.EditError as exc:
        return await _detail(request, principal, problems=exc.problems, rollback_note=note,
                             version=version, status=422)
    except diaspora.Conflict as exc:
        return render.message(request, "Conflict", f"Not rolled back: {exc}.", status=409)
    deps.kick(request)
    return RedirectResponse(f"/diaspora/saved?saved={stored}&restored={version}" if stored
                            else "/diaspora/saved", status_code=303)


@router.get("/diaspora/saved", response_class=HTMLResponse)
async def saved(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    """After post/redirect/get: the map page with a confirmation."""
    q = request.query_params
    version, restored = version_number(q.get("saved")), version_number(q.get("restored"))
    if version and restored:
        text = (f"Version {restored} is back in force, stored as version {version}; running rules "
                "consumers switch to it when they receive the announcement.")
    elif version:
        text = (f"Saved version {version} of the diaspora map; running rules consumers switch to "
                "it when they receive the announcement.")
    else:
        text = "The draft is the same as the map in force: nothing was stored."
    return await _detail(request, principal, flash=text)
