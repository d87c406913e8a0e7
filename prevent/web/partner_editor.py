"""Editing one partner site and its contacts in the browser, with each validation error shown
next to its field. Saving goes through ``prevent.partners.edits.put_site`` (role check, audit)."""

from __future__ import annotations

import typing
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from prevent.partners import checks as registry_checks
from prevent.partners import edits as partners
from prevent.partners import registry, site_diasporas
from prevent.partners.registry import SiteIn
from prevent.platform.yamlsource import SourceError
from prevent.users import Principal, require
from prevent.web import deps, render
from prevent.web.security import gate

router = APIRouter()

SITE_FIELDS = ("site_id", "name", "kind", "communities", "diasporas", "address", "municipality", "lat",
               "lon", "zone_id", "floor_plan_ref", "notes")
CONTACT_FIELDS = ("contact_id", "name", "role", "email", "phone", "webhook_url", "webhook_format",
                  "language")
OPTIONAL = {"lat", "lon", "zone_id", "floor_plan_ref", "email", "phone", "webhook_url"}
KINDS = typing.get_args(registry.SiteKind)
CHANNELS = typing.get_args(registry.Channel)
MAX_CONTACTS = 50
FILLED = ("contact_id", "name", "email", "phone", "webhook_url")  # any of these: not an empty row
Errors = dict[str, str]  # field id -> message ("" key: about the whole site)


def site_form(site: SiteIn | None) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """A site as the form's raw values."""
    if site is None:
        return {"kind": KINDS[0]}, []
    data = site.model_dump(mode="json")
    values = {k: "" if data.get(k) is None else str(data[k]) for k in SITE_FIELDS}
    values["communities"] = "; ".join(site.communities)
    values["diasporas"] = "; ".join(site.diasporas)
    contacts = []
    for c in site.contacts:
        raw = c.model_dump(mode="json")
        contacts.append({**{k: "" if raw.get(k) is None else str(raw[k]) for k in CONTACT_FIELDS},
                         "channels": list(c.channels), "consent": c.consent})
    return values, contacts


def blank_contact() -> dict[str, Any]:
    return {"webhook_format": "json", "language": "en", "channels": ["email"], "consent": False,
            "blank": True}


def read_form(form: FormData) -> tuple[dict[str, str], list[dict[str, Any]]]:
    values = {k: str(form.get(k) or "").strip() for k in SITE_FIELDS}
    count = min(int(str(form.get("contact_rows") or "0")) if str(form.get("contact_rows") or "").isdigit()
                else 0, MAX_CONTACTS)
    contacts = []
    for i in range(count):
        row: dict[str, Any] = {k: str(form.get(f"c{i}-{k}") or "").strip() for k in CONTACT_FIELDS}
        row["channels"] = [c for c in form.getlist(f"c{i}-channels") if c in CHANNELS]
        row["consent"] = form.get(f"c{i}-consent") == "yes"
        row["remove"] = form.get(f"c{i}-remove") == "yes"
        contacts.append(row)
    return values, contacts


def validate(values: dict[str, str], contacts: list[dict[str, Any]]) -> tuple[SiteIn | None, Errors]:
    """The site the form describes, or field-level errors keyed by input id."""
    data: dict[str, Any] = {k: (None if k in OPTIONAL and not v else v) for k, v in values.items()}
    kept: list[int] = []  # form row of each contact passed to the model
    data["contacts"] = []
    errors: Errors = {}
    for i, row in enumerate(contacts):
        if row.get("remove") or not any(row.get(k) for k in FILLED):
            continue  # removed, or the empty row offered for a new contact
        contact = {k: (None if k in OPTIONAL and not row[k] else row[k]) for k in CONTACT_FIELDS}
        contact |= {"channels": row["channels"], "consent": row["consent"]}
        for channel in row["channels"]:
            address = {"email": "email", "sms": "phone", "webhook": "webhook_url"}[channel]
            if not row[address]:
                errors[f"c{i}-{address}"] = f"needed for the {channel} channel"
        kept.append(i)
        data["contacts"].append(contact)
    seen: dict[str, int] = {}
    for position, contact in zip(kept, data["contacts"], strict=True):
        if contact["contact_id"] and seen.setdefault(contact["contact_id"], position) != position:
            errors[f"c{position}-contact_id"] = "another contact of this site has this id"
    try:
        site = SiteIn.model_validate(data)
    except ValidationError as exc:
        site = None
        for err in exc.errors():
            loc = err["loc"]
            if loc and loc[0] == "contacts" and len(loc) >= 3 and isinstance(loc[1], int):
                key = f"c{kept[loc[1]]}-{loc[2]}"
            elif loc and loc[0] in SITE_FIELDS:
                key = f"f-{loc[0]}"
            else:
                key = ""
            errors.setdefault(key, _message(err["msg"]))
    return (None if errors else site), errors


def _message(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def domain_errors(problems: list[str], contacts: list[dict[str, Any]]) -> Errors:
    """Map put_site's cross-record problems to the fields they are about."""
    errors: Errors = {}
    for problem in problems:
        if "unknown patrol zone" in problem:
            errors["f-zone_id"] = "unknown patrol zone"
            continue
        if ": diasporas" in problem:
            errors["f-diasporas"] = "; ".join(filter(None, (errors.get("f-diasporas"),
                                                            problem.split(": ", 2)[-1])))
            continue
        row = next((i for i, c in enumerate(contacts)
                    if c.get("contact_id") and f"contact {c['contact_id']} " in problem), None)
        errors[f"c{row}-contact_id" if row is not None else ""] = problem
    return errors


async def _form_page(request: Request, principal: Principal, site_id: str | None, *,
                     values: dict[str, str] | None = None, contacts: list[dict[str, Any]] | None = None,
                     errors: Errors | None = None, status: int = 200) -> HTMLResponse:
    async with deps.db(request).transaction() as session:
        current = await partners.read(session, principal)
        zones = sorted(await registry.known_zone_ids(session))
        chosen = await registry.own_choices(session, site_id) if site_id else {}
        places = await site_diasporas.places_in_force(session, deps.settings(request).playbooks_dir)
    if values is None:
        site = next((s for s in current.sites if s.site_id == site_id), None)
        if site_id is not None and site is None:
            return render.message(request, "Not found", f"No site {site_id}.", status=404)
        values, contacts = site_form(site)
    # A contact's own choices (opt-out, language, channels) outlive edits here: say so.
    contacts = [{**c, "own_choice_at": chosen.get(c.get("contact_id") or "")} for c in contacts or []]
    if not any(c.get("blank") for c in contacts):
        contacts.append(blank_contact())
    stored = next((s for s in current.sites if s.site_id == site_id), None) if site_id else None
    return render.page(request, "partner_site.html", {
        "site_id": site_id, "v": values, "contacts": contacts, "errors": errors or {},
        "kinds": KINDS, "channels": CHANNELS, "zones": zones,
        # The diasporas in force for this site, by name ("Jamaica (JM)").
        "diasporas": [places.label(code) for code in (stored.diasporas if stored else ())],
        "diaspora_map_version": places.version}, status=status)


@router.get("/partners/new-site", response_class=HTMLResponse)
async def new_site(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    return await _form_page(request, principal, None)


@router.get("/partners/sites/{site_id}", response_class=HTMLResponse)
async def edit_site(request: Request, site_id: str, principal: Principal = Depends(gate)) -> HTMLResponse:
    return await _form_page(request, principal, site_id[:100])


@router.post("/partners/sites", response_class=HTMLResponse)
async def save_site(request: Request, principal: Principal = Depends(gate)) -> Response:
    require(principal, *partners.EDITORS, action="edit the partner registry")
    form = await request.form()
    existing = str(form.get("existing") or "")[:100] or None
    values, contacts = read_form(form)
    if existing:
        values["site_id"] = existing  # a site's id does not change; create a new site instead
    site, errors = validate(values, contacts)
    known = registry_checks.known_communities(deps.settings(request).playbooks_dir)
    unknown = [p for c in (site.communities if site else ())
               if (p := registry_checks.community_problem(c, known))]
    if unknown:
        site, errors = None, {**errors, "f-communities": "; ".join(unknown)}
    if site is not None:
        try:
            async with deps.db(request).transaction() as session:
                # Countries and regions as typed ("Punjab", "jm") become codes; an unknown one
                # is shown at the field (every one at once).
                places = await site_diasporas.places_in_force(
                    session, deps.settings(request).playbooks_dir)
                codes, problems = places.normalise_all(site.diasporas)
                if problems:
                    raise SourceError([f"site {site.site_id}: diasporas: {msg}" for _, msg in problems])
                site = site.model_copy(update={"diasporas": codes})
                if existing is None and site.site_id in {
                        s.site_id for s in (await partners.read(session, principal)).sites}:
                    errors = {"f-site_id": f"a site {site.site_id} already exists: edit it instead"}
                else:
                    await partners.put_site(session, principal, site)
        except SourceError as exc:
            errors = domain_errors(exc.problems, contacts)
    if errors:
        contacts = [{**c, "blank": not any(c.get(k) for k in FILLED)} for c in contacts]
        return await _form_page(request, principal, existing, values=values, contacts=contacts,
                                errors=errors, status=422)
    assert site is not None  # noqa: S101 - narrows the type: no errors means a site
    deps.kick(request)
    return RedirectResponse(f"/partners/sites/{site.site_id}?saved=1", status_code=303)


@router.post("/partners/sites/{site_id}/delete", response_class=HTMLResponse)
async def delete_site(request: Request, site_id: str, principal: Principal = Depends(gate)) -> Response:
    async with deps.db(request).transaction() as session:
        deleted = await partners.delete_site(session, principal, site_id[:100])
    if not deleted:
        return render.message(request, "Not found", f"No site {site_id}.", status=404)
    return RedirectResponse("/partners?deleted=1", status_code=303)

