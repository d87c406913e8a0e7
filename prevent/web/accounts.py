"""Users and their access, for administrators: add a user, change a role, disable or re-enable
an account. What `prevent users` does on the server; every change goes through
``prevent.users`` (role check, audit). Second factors are enrolled on the server
(`prevent users totp NAME`): the secret is never shown in a browser."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from prevent import users
from prevent.users import Principal, Role
from prevent.web import deps, render
from prevent.web.security import gate

router = APIRouter()

ADD_FIELDS = ("name", "role", "password")
Errors = dict[str, str]  # input id -> message ("" key: about the whole form)


def _error_field(message: str) -> str:
    """The add form's input a ``UserError`` is about (its message names the field)."""
    if message.startswith("user "):  # "user name ...", "user X already exists"
        return "u-name"
    if message.startswith("password"):
        return "u-password"
    if message.startswith("role"):
        return "u-role"
    return ""


async def _users_page(request: Request, principal: Principal, *, form: dict[str, str] | None = None,
                      errors: Errors | None = None, status: int = 200) -> HTMLResponse:
    async with deps.db(request).transaction() as session:
        listed = await users.list_users(session, principal)
    return render.page(request, "users.html", {"users": listed, "roles": list(Role), "f": form or {},
                                               "errors": errors or {}}, status=status)


@router.get("/users", response_class=HTMLResponse)
async def users_page(request: Request, principal: Principal = Depends(gate)) -> HTMLResponse:
    return await _users_page(request, principal)


@router.post("/users", response_class=HTMLResponse)
async def add_user(request: Request, principal: Principal = Depends(gate)) -> Response:
    form = await request.form()
    values = {k: str(form.get(k) or "") for k in ADD_FIELDS}
    values["name"] = values["name"].strip()  # a password is taken as typed
    try:
        role = users.parse_role(values["role"])
        async with deps.db(request).transaction() as session:
            await users.create_user(session, principal, values["name"], role, values["password"])
    except users.UserError as exc:
        kept = {k: v for k, v in values.items() if k != "password"}  # never sent back
        return await _users_page(request, principal, form=kept,
                                 errors={_error_field(str(exc)): str(exc)}, status=422)
    deps.kick(request)
    return RedirectResponse(f"/users?added={values['name']}", status_code=303)


@router.post("/users/{name}", response_class=HTMLResponse)
async def change_user(request: Request, name: str, principal: Principal = Depends(gate)) -> Response:
    """A role change (``role``) or ``active`` = yes / no, from the row's forms."""
    form = await request.form()
    role_text, active_text = str(form.get("role") or ""), str(form.get("active") or "")
    try:
        role = users.parse_role(role_text) if role_text else None
        active = {"yes": True, "no": False}.get(active_text)
        if role is None and active is None:
            raise users.UserError("choose a role, or enable or disable the user")
        async with deps.db(request).transaction() as session:
            await users.change_user(session, principal, name[:100], role=role, active=active)
    except users.UserError as exc:
        return render.message(request, "Not changed", str(exc), status=422)
    deps.kick(request)
    return RedirectResponse(f"/users?changed={name[:100]}", status_code=303)
