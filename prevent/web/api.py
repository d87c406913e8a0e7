"""The service API: JSON over HTTP under ``/api/``, used by the console and by tools.

Thin: validate the request body (pydantic), resolve the principal, call the domain
service (which checks the role), commit, then kick the outbox relay so the
decision reaches Kafka at once instead of at the relay's next tick.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from notifiers import patrol
from prevent import audit, users
from prevent.alerts import lifecycle
from prevent.alerts import states as alerts
from prevent.contracts import Scope, utcnow
from prevent.partners import edits as partners
from prevent.partners import site_diasporas
from prevent.partners.acklinks import secret_key
from prevent.partners.registry import RosterEntryIn, SiteIn, ZoneIn
from prevent.platform.config import get_settings
from prevent.platform.yamlsource import SourceError
from prevent.rules import suppression
from prevent.users import Principal
from prevent.web.auth import current_principal


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class DecidedFirst(BaseModel):
    message: str
    decided_by: str | None = None
    status: str
    revision: int


class Problem(BaseModel):
    """Every refusal: ``detail`` says why, as a sentence; for invalid input, each field and
    what is wrong with it (or each ``file:line`` problem); for a decision another person
    took first, who and what."""

    detail: str | list[FieldProblem] | list[str] | DecidedFirst


# The refusals in the OpenAPI document (issue 23's schemathesis run checks every answer
# against it). 422 replaces FastAPI's own: it is also the domain's "invalid" with a sentence.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": why} for code, why in (
        (400, "unreadable input (nested too deeply, not UTF-8, a number out of range)"),
        (401, "no principal: sign in (POST /api/login) and send the token as a Bearer"),
        (403, "the role does not allow this"),
        (404, "no such alert or patrol assignment"),
        (409, "a conflict: the alert or plan changed meanwhile, or the transition is not allowed"),
        (413, "the request body is over this route's limit"),
        (422, "invalid input: each field and what is wrong with it"),
        (429, "too many failed sign-ins (POST /api/login)"),
    )}



def _nul_in(value: Any, where: str, found: list[str], budget: list[int]) -> None:
    """Where a NUL character is in a decoded JSON value (keys too), at most 5 places;
    ``budget`` bounds the walk (a body is at most PREVENT_MAX_REQUEST_BYTES anyway)."""
    stack = [(value, where)]
    while stack and len(found) < 5 and budget[0] > 0:
        budget[0] -= 1
        item, at = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                found.append(at)
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in str(key):
                    found.append(at)
                stack.append((child, f"{at}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{at}.{i}") for i, child in enumerate(item))


async def refuse_nul(request: Request) -> None:
    """422 for a NUL character (U+0000) anywhere in the path, the query or the JSON body: no
    field needs one, and PostgreSQL cannot store it in text (the insert failed: a server
    error). Runs after the sign-in gate, so nobody learns anything from it."""
    found = [f"query.{k}" for k, v in request.query_params.multi_items() if "\x00" in k + v]
    if "\x00" in request.url.path:
        found.append("path")
    if not found and await request.body():
        try:
            data = await request.json()
        except ValueError:
            data = None  # not JSON: the route's own validation answers
        _nul_in(data, "body", found, [100_000])
    if found:
        raise HTTPException(422, "text may not contain a NUL character (U+0000): "
                            + ", ".join(found))


router = APIRouter(prefix="/api", tags=["api"], responses=ERRORS,
                   dependencies=[Depends(refuse_nul)])


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# A password is taken as typed, as the console's forms take it.
Password = Annotated[str, StringConstraints(strip_whitespace=False)]


class LoginIn(Body):
    name: str = Field(max_length=users.MAX_NAME)
    password: Password = Field(max_length=1000)
    code: str = Field(default="", max_length=10)  # the TOTP code, for a user who has one


class ConfirmIn(Body):
    revision: int = Field(ge=1, description="the revision you saw (optimistic concurrency)")
    note: str | None = Field(default=None, max_length=4000)
    scope: Scope | None = None


# alerts.DISPOSITIONS spelled out, as a type checker needs a Literal's values written in it.
Disposition = Literal["not_relevant", "duplicate", "no_local_action", "already_handled"]
if get_args(Disposition) != alerts.DISPOSITIONS:  # a disposition added there must be added here
    raise RuntimeError(f"api.Disposition differs from alerts.DISPOSITIONS {alerts.DISPOSITIONS}")


class DismissIn(Body):
    revision: int = Field(ge=1)
    disposition: Disposition
    note: str = Field(min_length=1, max_length=4000)


class CloseIn(Body):
    revision: int = Field(ge=1)
    note: str | None = Field(default=None, max_length=4000)


class ExtendPatrolsIn(Body):
    hours: int = Field(ge=1, le=7 * 24)
    note: str = Field(min_length=1, max_length=4000)
    until: datetime | None = Field(default=None, description="the plan's end as last seen")


Community = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class ExerciseIn(Body):
    playbook: str = Field(max_length=200)
    communities: list[Community] = Field(min_length=1, max_length=50)
    severity: int = Field(ge=0, le=4)
    title: str = Field(min_length=1, max_length=1000)
    summary: str = Field(default="", max_length=10_000)


class UserIn(Body):
    name: str
    role: users.Role
    password: Password


class UserChange(Body):
    role: users.Role | None = None
    active: bool | None = None


@contextmanager
def _domain_errors() -> Iterator[None]:
    """Domain errors → HTTP statuses, with the domain's message for the person who acted."""
    try:
        yield
    except alerts.AlertNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except alerts.AlertConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, {
            "message": str(exc), "decided_by": exc.current.decided_by,
            "status": exc.current.status.value, "revision": exc.current.revision}) from exc
    except alerts.IllegalTransition as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except SourceError as exc:
        raise HTTPException(422, exc.problems) from exc
    except (alerts.AlertError, suppression.SilenceError, users.UserError) as exc:
        raise HTTPException(422, str(exc)) from exc
    except users.AuthError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from exc


def _state(request: Request) -> Any:
    return request.app.state.console


def _kick(request: Request) -> None:
    kick = getattr(_state(request), "kick", None)
    if kick is not None:
        kick()


# ------------------------------------------------------------------ authentication


@router.post("/login")
async def login(body: LoginIn, request: Request) -> dict[str, str]:
    """Exchange a name, password and (for a user who has one) TOTP code for a new bearer token:
    the console's sign-in rules and limits (``users.sign_in``), audited, good or bad."""
    from prevent.web.security import client_address  # the console imports this module

    address_limit = request.app.state.signin_limiter
    address = client_address(request)
    if await address_limit.blocked(address):
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            "too many failed sign-ins from this address; wait 15 minutes")
    key = secret_key(getattr(_state(request), "settings", None) or get_settings())
    async with users.sign_in_lock(body.name), _state(request).db.transaction() as session:
        outcome = await users.sign_in(session, body.name, body.password, body.code, key=key)
    if isinstance(outcome, users.Refusal):  # only now, so the attempt's audit entry is committed
        if outcome.blocked:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, outcome.message)
        await address_limit.failed(address)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, outcome.message,
                            headers={"WWW-Authenticate": "Bearer"})
    principal = outcome
    with _domain_errors():
        async with _state(request).db.transaction() as session:
            token = await users.issue_token(session, principal.name, actor=principal.name)
    _kick(request)
    return {"token": token, "name": principal.name, "role": principal.role.value}


@router.get("/me")
async def me(principal: Principal = Depends(current_principal)) -> dict[str, str]:
    return {"name": principal.name, "role": principal.role.value}


# ------------------------------------------------------------------ alerts


@router.get("/alerts")
async def list_alerts(request: Request, status_: list[str] = Query(default=[], alias="status"),
                      playbook: str | None = None, community: str | None = None,
                      exercise: bool | None = None, limit: int = Query(default=200, ge=1, le=1000),
                      _p: Principal = Depends(current_principal)) -> list[dict[str, Any]]:
    async with _state(request).db.transaction() as session:
        found = await lifecycle.list_alerts(session, status=status_, playbook=playbook,
                                            community=community, exercise=exercise, limit=limit)
    return [a.model_dump(mode="json") for a in found]


@router.get("/alerts/{alert_id}")
async def alert_detail(alert_id: str, request: Request,
                       _p: Principal = Depends(current_principal)) -> dict[str, Any]:
    with _domain_errors():
        async with _state(request).db.transaction() as session:
            return await lifecycle.detail(session, alert_id)


async def _decide(request: Request, principal: Principal, alert_id: str, action: str,
                  **kwargs: Any) -> dict[str, Any]:
    with _domain_errors():
        alert = await lifecycle.decide(_state(request).db, principal, alert_id, action=action,
                                       **kwargs)
    _kick(request)
    return alert.model_dump(mode="json")


@router.post("/alerts/{alert_id}/confirm")
async def confirm(alert_id: str, body: ConfirmIn, request: Request,
                  principal: Principal = Depends(current_principal)) -> dict[str, Any]:
    return await _decide(request, principal, alert_id, "confirm", expected_revision=body.revision,
                         note=body.note, scope=body.scope)


@router.post("/alerts/{alert_id}/dismiss")
async def dismiss(alert_id: str, body: DismissIn, request: Request,
                  principal: Principal = Depends(current_principal)) -> dict[str, Any]:
    return await _decide(request, principal, alert_id, "dismiss", expected_revision=body.revision,
                         note=body.note, disposition=body.disposition)


@router.post("/alerts/{alert_id}/close")
async def close(alert_id: str, body: CloseIn, request: Request,
                principal: Principal = Depends(current_principal)) -> dict[str, Any]:
    return await _decide(request, principal, alert_id, "close", expected_revision=body.revision,
                         note=body.note)


@router.post("/alerts/{alert_id}/patrols/extend")
async def extend_patrols(alert_id: str, body: ExtendPatrolsIn, request: Request,
                         principal: Principal = Depends(current_principal)) -> dict[str, Any]:
    try:
        async with _state(request).db.transaction() as session:
            extended = await patrol.extend(session, principal, alert_id, hours=body.hours,
                                           note=body.note, seen_until=body.until)
    except patrol.PatrolConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except patrol.PatrolError as exc:
        raise HTTPException(422, str(exc)) from exc
    _kick(request)
    return {"patrols": [p.model_dump(mode="json") for p in extended]}


@router.post("/exercises", status_code=status.HTTP_201_CREATED)
async def raise_exercise(body: ExerciseIn, request: Request,
                         principal: Principal = Depends(current_principal)) -> dict[str, Any]:
    with _domain_errors():
        async with _state(request).db.transaction() as session:
            alert = await lifecycle.raise_exercise(
                session, principal, playbook_id=body.playbook, communities=body.communities,
                severity=body.severity, title=body.title, summary=body.summary)
    _kick(request)
    return alert.model_dump(mode="json")


@router.get("/stats")
async def stats(request: Request, _p: Principal = Depends(current_principal)) -> dict[str, Any]:
    async with _state(request).db.transaction() as session:
        return await lifecycle.statistics(session)


# ------------------------------------------------------------------ silences


@router.get("/silences")
async def list_silences(request: Request, active: bool = False,
                        _p: Principal = Depends(current_principal)) -> list[dict[str, object]]:
    now = utcnow()
    async with _state(request).db.transaction() as session:
        rows = await suppression.list_silences(session, active_at=now if active else None)
    return [suppression.silence_view(r, now) for r in rows]


@router.post("/silences", status_code=status.HTTP_201_CREATED)
async def create_silence(body: suppression.SilenceIn, request: Request,
                         principal: Principal = Depends(current_principal)) -> dict[str, object]:
    with _domain_errors():
        async with _state(request).db.transaction() as session:
            row = await suppression.create_silence(session, principal, body)
    _kick(request)
    return suppression.silence_view(row)


@router.delete("/silences/{silence_id}")
async def expire_silence(silence_id: str, request: Request, reason: str | None = None,
                         principal: Principal = Depends(current_principal)) -> dict[str, object]:
    """Expire a silence early (silences are never deleted: they are part of the record)."""
    with _domain_errors():
        async with _state(request).db.transaction() as session:
            row = await suppression.expire_silence(session, principal, silence_id, reason=reason)
    _kick(request)
    return suppression.silence_view(row)


@router.get("/suppressed")
async def suppressed(request: Request, _p: Principal = Depends(current_principal)
                     ) -> list[dict[str, object]]:
    async with _state(request).db.transaction() as session:
        rows = await suppression.suppressed(session)
    return [{"match_id": r.match_id, "alert_id": r.alert_id, "incident_id": r.incident_id,
             "playbook_id": r.playbook_id, "reason": r.reason, "by": r.by, "exercise": r.exercise,
             "at": r.at.isoformat()} for r in rows]


# ------------------------------------------------------------------ registry


@router.get("/registry")
async def get_registry(request: Request, principal: Principal = Depends(current_principal)
                       ) -> dict[str, Any]:
    with _domain_errors():
        async with _state(request).db.transaction() as session:
            return (await partners.read(session, principal)).model_dump(mode="json")


async def _registry_change(request: Request, change: Any) -> None:
    with _domain_errors():
        async with _state(request).db.transaction() as session:
            await change(session)
    _kick(request)


def _same_id(path_id: str, body_id: str) -> None:
    if path_id != body_id:
        raise HTTPException(422,
                            f"id in the path ({path_id}) differs from the body ({body_id})")


@router.put("/registry/sites/{site_id}")
async def put_site(site_id: str, body: SiteIn, request: Request,
                   principal: Principal = Depends(current_principal)) -> dict[str, str]:
    _same_id(site_id, body.site_id)
    playbooks_dir = (getattr(_state(request), "settings", None) or get_settings()).playbooks_dir

    async def change(session: Any) -> None:
        # The diasporas checked against the map in force (422 naming diasporas[i]), stored as codes.
        places = await site_diasporas.places_in_force(session, playbooks_dir)
        await partners.put_site(session, principal, body, places=places)

    await _registry_change(request, change)
    return {"site_id": site_id}


@router.delete("/registry/sites/{site_id}")
async def delete_site(site_id: str, request: Request,
                      principal: Principal = Depends(current_principal)) -> dict[str, str]:
    await _registry_change(request, lambda s: partners.delete_site(s, principal, site_id))
    return {"site_id": site_id}


@router.put("/registry/zones/{zone_id}")
async def put_zone(zone_id: str, body: ZoneIn, request: Request,
                   principal: Principal = Depends(current_principal)) -> dict[str, str]:
    _same_id(zone_id, body.zone_id)
    await _registry_change(request, lambda s: partners.put_zone(s, principal, body))
    return {"zone_id": zone_id}


@router.delete("/registry/zones/{zone_id}")
async def delete_zone(zone_id: str, request: Request,
                      principal: Principal = Depends(current_principal)) -> dict[str, str]:
    await _registry_change(request, lambda s: partners.delete_zone(s, principal, zone_id))
    return {"zone_id": zone_id}


@router.put("/registry/roster")
async def put_roster(body: list[RosterEntryIn], request: Request,
                     principal: Principal = Depends(current_principal)) -> dict[str, int]:
    await _registry_change(request, lambda s: partners.put_roster(s, principal, body))
    return {"entries": len(body)}


# ------------------------------------------------------------------ users, audit


@router.get("/users")
async def list_users(request: Request, principal: Principal = Depends(current_principal)
                     ) -> list[dict[str, object]]:
    with _domain_errors():
        async with _state(request).db.transaction() as session:
            return await users.list_users(session, principal)


@router.post("/users", status_code=status.HTTP_201_CREATED)
async def add_user(body: UserIn, request: Request,
                   principal: Principal = Depends(current_principal)) -> dict[str, str]:
    with _domain_errors():
        async with _state(request).db.transaction() as session:
            await users.create_user(session, principal, body.name, body.role, body.password)
    _kick(request)
    return {"name": body.name, "role": body.role.value}


@router.patch("/users/{name}")
async def change_user(name: str, body: UserChange, request: Request,
                      principal: Principal = Depends(current_principal)) -> dict[str, object]:
    """Another user's role, or whether they may sign in (disabling revokes their access)."""
    with _domain_errors():
        async with _state(request).db.transaction() as session:
            changed = await users.change_user(session, principal, name, role=body.role,
                                              active=body.active)
    _kick(request)
    return {"name": name, "changed": changed}


@router.get("/audit")
async def audit_trail(request: Request, subject: str | None = None,
                      since_hours: float | None = Query(default=None, gt=0, le=24 * 365 * 100),
                      _p: Principal = Depends(current_principal)) -> list[dict[str, object]]:
    since: datetime | None = utcnow() - timedelta(hours=since_hours) if since_hours else None
    async with _state(request).db.transaction() as session:
        rows = await audit.entries(session, subject=subject, since=since)
    return [{"audit_id": r.audit_id, "at": r.at.isoformat(), "actor": r.actor, "action": r.action,
             "subject": r.subject, "before": r.before, "after": r.after, "reason": r.reason}
            for r in rows]
