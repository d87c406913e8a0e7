"""Schemathesis against the OpenAPI document of ``/api``, in process (ASGI, no network), as
each role and as nobody (issue 23, point 4).

The document is the one FastAPI builds from the console app, cut to ``/api/``. Every operation
is called with generated requests, valid ones and invalid ones, with the bearer token of a
viewer, a duty inspector, an engagement officer, an administrator, or with none. Each answer:

* is never a server error, and matches the document (status, content type, body schema);
* for nobody: 401 (or 4xx for a body that cannot be read at all), never data;
* for a role the operation does not allow: 403 (or 4xx for invalid input), never data, and
  never 404 or 409 (they would tell whether an alert, site or user exists);
* for a role that does not hold the registry: no contact's email, phone or webhook anywhere.

Requests go through ``httpx.ASGITransport`` on the test's own event loop (the database the
app uses lives there); schemathesis generates the cases and checks the answers.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from console.conftest import PASSWORD, Console
from hypothesis import given
from hypothesis import strategies as st
from lifecycle.support import make_alert, open_alert
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core import NotSet

from fuzz.conftest import fuzz_settings
from prevent import users
from prevent.partners.registry import parse_registry
from prevent.platform.demo import SAMPLE_PARTNERS
from prevent.users import Role
from prevent.web.app import create_app

ANY = frozenset(Role)
INSPECTOR = frozenset({Role.DUTY_INSPECTOR})
EDITORS = frozenset({Role.ENGAGEMENT_OFFICER, Role.ADMIN})
ADMIN = frozenset({Role.ADMIN})
PUBLIC = None  # no principal needed

# Who may call what: the domain's role checks (users.require), as an operator reads them.
ALLOWED: dict[tuple[str, str], frozenset[Role] | None] = {
    ("POST", "/api/login"): PUBLIC,
    ("GET", "/api/me"): ANY,
    ("GET", "/api/alerts"): ANY,
    ("GET", "/api/alerts/{alert_id}"): ANY,
    ("POST", "/api/alerts/{alert_id}/confirm"): INSPECTOR,
    ("POST", "/api/alerts/{alert_id}/dismiss"): INSPECTOR,
    ("POST", "/api/alerts/{alert_id}/close"): INSPECTOR,
    ("POST", "/api/alerts/{alert_id}/patrols/extend"): INSPECTOR,
    ("POST", "/api/exercises"): frozenset({Role.DUTY_INSPECTOR, Role.ENGAGEMENT_OFFICER}),
    ("GET", "/api/stats"): ANY,
    ("GET", "/api/silences"): ANY,
    ("POST", "/api/silences"): INSPECTOR,
    ("DELETE", "/api/silences/{silence_id}"): INSPECTOR,
    ("GET", "/api/suppressed"): ANY,
    ("GET", "/api/registry"): EDITORS,
    ("PUT", "/api/registry/sites/{site_id}"): EDITORS,
    ("DELETE", "/api/registry/sites/{site_id}"): EDITORS,
    ("PUT", "/api/registry/zones/{zone_id}"): EDITORS,
    ("DELETE", "/api/registry/zones/{zone_id}"): EDITORS,
    ("PUT", "/api/registry/roster"): EDITORS,
    ("GET", "/api/users"): ADMIN,
    ("POST", "/api/users"): ADMIN,
    ("PATCH", "/api/users/{name}"): ADMIN,
    ("GET", "/api/audit"): ANY,
    ("POST", "/api/patrols/{assignment_id}/visits"): frozenset({Role.DUTY_INSPECTOR, Role.ADMIN}),
    ("GET", "/api/patrols/{assignment_id}/visits"): ANY,
}

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def api_document() -> dict[str, Any]:
    """The OpenAPI document of the console app, only ``/api/`` (the console's pages are HTML
    forms with their own tests; the app serves no document: ``openapi_url=None``)."""
    document = create_app(None).openapi()  # type: ignore[arg-type] - no lifespan needed
    document["paths"] = {p: ops for p, ops in document["paths"].items() if p.startswith("/api/")}
    return document


SCHEMA = schemathesis.openapi.from_dict(api_document())
OPERATIONS = {(op.method.upper(), op.path): op
              for op in (result.ok() for result in SCHEMA.get_all_operations())}

# Real ids from the seeded database, so generated requests reach past "not found" too.
SAMPLE = parse_registry(SAMPLE_PARTNERS)
ALERT = make_alert(cluster="fuzz")
KNOWN: dict[str, list[str]] = {
    "alert_id": [ALERT.alert_id],
    "site_id": [s.site_id for s in SAMPLE.sites],
    "zone_id": [z.zone_id for z in SAMPLE.zones],
    # Not the caller's own name (refused anyway) and not the fuzzing users' (a role change
    # would end the token the run uses): a user the run creates for the purpose.
    "name": ["spare-user"],
}
# What only the registry's holders may read: every contact's email, phone and webhook.
CONTACT_DATA = sorted({value for site in SAMPLE.sites for c in site.contacts
                       for value in (c.email, c.phone, c.webhook_url) if value}
                      | {r.email for r in SAMPLE.roster or ()})


def _same_id_in_body(case: Any) -> Any:
    """PUT /api/registry/{sites,zones}/{id} wants the body's id in the path: generated cases
    rarely agree, so half of them are made to (the others test the mismatch)."""
    body = case.body
    for key in ("site_id", "zone_id"):
        if key in (case.path_parameters or {}) and isinstance(body, dict) \
                and isinstance(body.get(key), str) and body[key] and "/" not in body[key]:
            case.path_parameters[key] = body[key]
    return case


def _real_exercise(case: Any) -> Any:
    """POST /api/exercises naming a stored playbook and a known community (generated names
    match none), so exercises are raised too, not only refused."""
    if isinstance(case.body, dict):
        case.body["playbook"] = ALERT.playbook_id
        case.body["communities"] = list(ALERT.communities)
    return case


def _strategy(op: Any, mode: GenerationMode) -> st.SearchStrategy[Any]:
    strategies = [op.as_strategy(generation_mode=mode)]
    known = {name: values for name, values in KNOWN.items()
             if name in {p.name for p in op.path_parameters}}
    if known:
        strategies += [st.sampled_from(values).flatmap(
            lambda value, name=name: op.as_strategy(generation_mode=mode,
                                                    path_parameters={name: value}))
            for name, values in known.items()]
    if mode is GenerationMode.POSITIVE and op.method.upper() == "PUT" and "{" in op.path:
        strategies.append(op.as_strategy(generation_mode=mode).map(_same_id_in_body))
    if mode is GenerationMode.POSITIVE and op.path == "/api/exercises":
        strategies.append(op.as_strategy(generation_mode=mode).map(_real_exercise))
    return st.one_of(strategies)


def _has_negative(op: Any) -> bool:
    """Operations with something to get wrong (a body, a query, a path parameter)."""
    return bool(op.body or op.query or op.path_parameters)


CASES = st.one_of(
    [_strategy(op, GenerationMode.POSITIVE) for op in OPERATIONS.values()]
    + [_strategy(op, GenerationMode.NEGATIVE) for op in OPERATIONS.values() if _has_negative(op)])


def _request(case: Any, token: str | None) -> dict[str, Any]:
    """The case as httpx keyword arguments (schemathesis serializes for `requests`)."""
    sent = case.as_transport_kwargs(base_url="http://console")
    headers = {k: v for k, v in sent["headers"].items() if k.lower() != "connection"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    # Each path parameter percent-encoded whole, as a client on the wire would: a generated
    # "#", "?" or "/" is part of the value, and httpx refuses a raw control character.
    url = "http://console" + case.operation.path
    for name, value in (case.path_parameters or {}).items():
        url = url.replace("{" + name + "}", quote(str(value), safe=""))
    request: dict[str, Any] = {"method": sent["method"], "url": url, "headers": headers,
                               "params": sent.get("params") or None}
    if "json" in sent:
        request["json"] = sent["json"]
    elif "data" in sent:
        data = sent["data"]
        if isinstance(data, dict):
            request["data"] = data
        else:
            request["content"] = data.encode() if isinstance(data, str) else data
    return request


async def _seed(console: Console) -> dict[Role, str]:
    """An alert to decide, a spare user to change, and a token for each role."""
    await open_alert(console.db, ALERT)
    tokens: dict[Role, str] = {}
    async with console.db.transaction() as session:
        await users.add_user(session, "admin", Role.ADMIN, PASSWORD, actor="test")
        await users.add_user(session, "spare-user", Role.VIEWER, PASSWORD, actor="test")
        for role in Role:
            tokens[role] = await users.issue_token(session, role.value.replace("_", "-"),
                                                   actor="test")
    return tokens


def _detail_only(response: httpx.Response) -> bool:
    """A refusal: ``{"detail": ...}`` and nothing else."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) == {"detail"}


def _no_route(response: httpx.Response) -> bool:
    """The router's own answer when a generated path parameter such as ".." or "a/b" leads to
    no route, or to another one: the request never reached the operation, and the answer is
    the same for everyone."""
    return (response.status_code, response.content) in (
        (404, b'{"detail":"Not Found"}'), (405, b'{"detail":"Method Not Allowed"}'))


def check_roles(role: Role | None, case: Any, response: httpx.Response) -> None:
    key = (case.method.upper(), case.operation.path)
    allowed = ALLOWED[key]
    where = f"{key[0]} {key[1]} as {role.value if role else 'nobody'}"
    if _no_route(response):
        return
    if allowed is not PUBLIC and role is None:
        # Nobody: 401; a body that cannot be read at all is refused (400, 413, 422) before the
        # sign-in check looks at the request, which tells nothing either.
        assert response.status_code in (400, 401, 413, 422), (where, response.status_code, response.text)
        assert _detail_only(response), (where, response.text)
    elif allowed is not PUBLIC and role not in allowed:
        assert response.status_code in (400, 403, 413, 422), (where, response.status_code,
                                                               response.text)
        assert _detail_only(response), (where, response.text)
    if role not in EDITORS:
        leaked = [value for value in CONTACT_DATA if value in response.text]
        assert not leaked, (where, "contact data", leaked)


def _body_repr(case: Any) -> str:
    body = case.body
    if isinstance(body, NotSet):
        return ""
    try:
        return json.dumps(body)[:500]
    except (TypeError, ValueError):
        return repr(body)[:500]


async def _tokens(console: Console) -> dict[Role, str]:
    """Seeded once per test (the console fixture lives as long as the test, its examples share it)."""
    tokens = getattr(console, "fuzz_tokens", None)
    if tokens is None:
        tokens = console.fuzz_tokens = await _seed(console)  # type: ignore[attr-defined]
    return tokens


@pytest.mark.parametrize("role", [None, *Role], ids=lambda r: r.value if r else "nobody")
@fuzz_settings(150)
@given(case=CASES)
async def test_api_as_each_role(console: Console, role: Role | None, case: Any) -> None:
    tokens = await _tokens(console)
    async with console.client() as client:
        response = await client.request(**_request(case, tokens[role] if role else None))
    note = f"{case.method} {case.formatted_path} {case.query} {_body_repr(case)}"
    assert response.status_code < 500, (note, response.status_code, response.text)
    if _no_route(response):
        return
    case.validate_response(response, checks=CHECKS)
    check_roles(role, case, response)
