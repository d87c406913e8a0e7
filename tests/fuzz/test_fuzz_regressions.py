"""What the fuzz runs of issue 23 found, each as a test that failed before its fix.

* A webhook host spelled with ideographic or full-width dots (``0177。0。0。1``) passed the
  address check, and httpx, which sends, reads it as ``0177.0.0.1``: octal 127.0.0.1, the
  form the check exists to refuse (M1).
* A "billion laughs" YAML (nested aliases) kept the lexicon and diaspora loaders busy for
  minutes (the duplicate-key walk followed every alias), and an alias of its own parent
  recursed until RecursionError.
* YAML text PyYAML cannot construct (an integer of 5,000 digits, a date such as 2024-13-45)
  raised ValueError out of every loader; a NUL or a too-deep nesting did out of the feed
  registry; the lexicon and diaspora loaders named line 0 for a refused character.
* A partner CSV with a field over the csv module's 128 KiB limit gave a server error on
  import; a CSV whose lines end in CR alone passed the import's row limit (it counted LF).
* The API answered 401, 403, 404, 409, 413 and 429 without any in its OpenAPI document, and
  a repeated patrol visit 200 where the document said only 201.
* On PostgreSQL, a NUL character (U+0000) in a silence, a zone, a query filter, the audit's
  subject, a partner CSV cell or an SMS delivery receipt's id was a server error (PostgreSQL
  cannot store or compare it in text); so was one in a console form (a silence's comment, a
  dismissal's note, a patrol visit's path); a GeoJSON "\\u0000" went into the incident as it was.
"""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path

import pytest
from console.conftest import Console

from prevent.classification.diaspora import diaspora_errors
from prevent.classification.lexicon import load_lexicon_errors
from prevent.feeds.catalog import FeedRegistryError, load_feeds
from prevent.partners.registry import check_webhook_url
from prevent.platform.yamlsource import SourceError
from prevent.rules.playbooks.loader import parse_sources
from prevent.users import Role
from prevent.web.app import create_app

from . import targets

BOMB = "\n".join(['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
                 + [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
                 + ["countries: *a8", ""])


@pytest.mark.parametrize("url", ["http://0177。0。0。1/hook", "http://0x7f．1/", "http://127.0.0.1。/x",
                                 "https://２130706433/"])
def test_webhook_hosts_with_other_dots_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"IPv4|host"):
        check_webhook_url(url)


@pytest.mark.parametrize("url", ["https://partner.example/hook", "https://bücher.example/h",
                                 "http://192.0.2.10:8080/x", "https://[2001:db8::1]/"])
def test_ordinary_webhook_addresses_still_pass(url: str) -> None:
    assert check_webhook_url(url) == url


@pytest.mark.timeout(30)
def test_nested_aliases_cost_no_more_than_the_text(tmp_path: Path) -> None:
    _data, problems = diaspora_errors(BOMB, "diaspora.yaml", {"muslim"})
    assert problems and all(p.startswith("diaspora.yaml:") for p in problems)
    for name in ("communities.yaml", "incident_types.yaml"):
        (tmp_path / name).symlink_to(targets.PLAYBOOKS / name)
    (tmp_path / "lexicons").mkdir()
    for text in (BOMB, "&a [*a]\n", "lang: fr\nx: &b {y: *b}\n"):
        (tmp_path / "lexicons" / "fr.yaml").write_text(text)
        errors = load_lexicon_errors(tmp_path)
        assert errors and all(":" in e for e in errors)


@pytest.mark.parametrize("text, line", [
    ("id: x\nname: y\nversion: " + "9" * 5000 + "\n", 3),
    ("id: x\nactive: 2024-13-45\n", 2),
    ("id: x\nname: \x00\n", 2),
    ("id: x\nmatch: [b", 2),  # libyaml's mark at the end of the text was a line past it
])
def test_unreadable_yaml_values_name_their_line(text: str, line: int, tmp_path: Path) -> None:
    with pytest.raises(SourceError) as err:
        parse_sources([("p.yaml", text)])
    assert err.value.problems[0].startswith(f"p.yaml:{line}: ")
    _data, problems = diaspora_errors(text, "d.yaml", set())
    assert problems[0].startswith(f"d.yaml:{line}: invalid YAML")
    path = tmp_path / "feeds.yaml"
    path.write_text(text)
    with pytest.raises(FeedRegistryError) as feed_err:
        load_feeds(path)
    assert feed_err.value.line == line and "invalid YAML" in str(feed_err.value)


def test_feed_registry_too_deep_is_a_registry_error(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text("feeds: " + "[" * 10_000)
    with pytest.raises(FeedRegistryError, match="invalid YAML"):
        load_feeds(path)


async def test_partner_csv_with_a_huge_field_or_cr_lines(console: Console) -> None:
    state = console.app.state.console
    state.settings = state.settings.model_copy(update={"import_max_rows": 3})
    header = "site_id,site_name,communities,municipality"
    officer, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(officer):
        huge = f'{header}\ns1,"{"x" * 200_000}",muslim,Ottawa\n'.encode()
        answer = await officer.post("/partners/import", data={"csrf_token": token},
                                    files={"file": ("big.csv", huge, "text/csv")})
        assert answer.status_code == 422, answer.status_code
        assert "big.csv:2: not readable as CSV" in answer.text
        rows = "".join(f"s{n},Site {n},muslim,Town\r" for n in range(4))
        answer = await officer.post("/partners/import", data={"csrf_token": token},
                                    files={"file": ("cr.csv", f"{header}\r{rows}".encode(), "text/csv")})
        assert answer.status_code == 422 and "more than 3 rows" in answer.text


def test_the_api_document_names_its_refusals() -> None:
    paths = create_app(None).openapi()["paths"]  # type: ignore[arg-type]
    for path, operations in paths.items():
        if path.startswith("/api/"):
            for method, operation in operations.items():
                assert {"401", "403", "422"} <= set(operation["responses"]), (method, path)
    visit = paths["/api/patrols/{assignment_id}/visits"]["post"]["responses"]
    assert {"200", "201", "404"} <= set(visit)


async def test_nul_characters_are_refused_not_a_server_error(console: Console) -> None:
    from .test_api_schemathesis import _tokens

    tokens = await _tokens(console)
    calls = [
        (Role.DUTY_INSPECTOR, "POST", "/api/silences", {
            "matchers": {"playbook": "x\x00"}, "ends_at": "2099-01-01T00:00:00Z", "comment": "abc"}),
        (Role.DUTY_INSPECTOR, "POST", "/api/exercises", {
            "playbook": "place-of-worship-attack", "communities": ["muslim"], "severity": 1,
            "title": "a\x00b"}),
        (Role.ENGAGEMENT_OFFICER, "PUT", "/api/registry/zones/z%00", {"zone_id": "z\x00", "name": "n"}),
        (Role.ENGAGEMENT_OFFICER, "PUT", "/api/registry/zones/z", {"zone_id": "z", "name": "n\x00"}),
        (Role.VIEWER, "GET", "/api/alerts?playbook=a%00b", None),
        (Role.VIEWER, "GET", "/api/audit?subject=%00", None),
        (Role.VIEWER, "GET", "/api/patrols/a%00/visits", None),
    ]
    async with console.client() as client:
        for role, method, url, body in calls:
            answer = await client.request(method, url, json=body,
                                          headers={"Authorization": f"Bearer {tokens[role]}"})
            assert answer.status_code == 422, (url, answer.status_code, answer.text)
            assert "NUL" in answer.text, answer.text
        nobody = await client.get("/api/audit?subject=%00")
        assert nobody.status_code == 401  # the sign-in gate answers first
    officer, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(officer):
        csv = "site_id,site_name,communities,municipality\ns1,Centre\x00,muslim,Ottawa\n"
        answer = await officer.post("/partners/import", data={"csrf_token": token},
                                    files={"file": ("nul.csv", csv.encode(), "text/csv")})
        assert answer.status_code == 422 and "nul.csv:2: site_name" in answer.text, answer.status_code


@pytest.mark.parametrize("text", ["---", "?    \ufffd"])
def test_an_empty_value_at_the_end_names_a_line_of_the_file(text: str) -> None:
    """atheris: libyaml marks an empty value (or document) at the end of a text without a
    final line break one line past the last."""
    with pytest.raises(SourceError) as err:
        parse_sources([("p.yaml", text)])
    assert all(p.startswith("p.yaml:1: ") for p in err.value.problems), err.value.problems
    _data, problems = diaspora_errors(text, "d.yaml", set())
    assert problems and all(p.startswith("d.yaml:1: ") for p in problems), problems


async def test_an_sms_receipt_with_a_nul_is_refused(console: Console) -> None:
    import json
    import time

    from pydantic import SecretStr

    from notifiers.channels.http import SIGNATURE_HEADER, sign

    state = console.app.state.console
    state.settings = state.settings.model_copy(update={"sms_inbound_secret": SecretStr("s")})
    async with console.client() as client:
        for path, fields in (("/sms/status", {"id": "a\x00", "status": "delivered"}),
                             ("/sms/inbound", {"from": "+44\x00", "text": "ACK"})):
            body = json.dumps(fields).encode()
            answer = await client.post(path, content=body,
                                       headers={SIGNATURE_HEADER: sign("s", body, int(time.time()))})
            assert answer.status_code == 422, (path, answer.status_code)


def test_a_nul_in_a_feed_never_reaches_the_incident() -> None:
    import json

    from prevent.contracts import FeedKind

    feature = {"type": "Feature", "id": "q1", "properties": {
        "title": "Quake\u0000 near X", "place": "X\u0000", "time": 1714557600000,
        "url": "https://quakes.example/q1"}, "geometry": {"type": "Point", "coordinates": [1, 2, 3]}}
    body = json.dumps({"type": "FeatureCollection", "features": [feature]}).encode()
    targets.feed(body, FeedKind.GEOJSON)  # asserts no NUL in any incident


async def test_console_forms_refuse_nul_characters(console: Console) -> None:
    from .test_api_schemathesis import ALERT, _tokens

    await _tokens(console)  # the alert and the users
    inspector, token = await console.signed_in(Role.DUTY_INSPECTOR)
    async with aclosing(inspector):
        for url, form in (("/silences", {"playbook": "x", "hours": "2", "comment": "abc\x00"}),
                          (f"/alerts/{ALERT.alert_id}/dismiss",
                           {"revision": "1", "disposition": "duplicate", "note": "n\x00"}),
                          ("/patrols/x%00/visits", {"note": "a"})):
            answer = await inspector.post(url, data={"csrf_token": token, **form})
            assert answer.status_code == 422 and "NUL" in answer.text, (url, answer.status_code)
        ok = await inspector.post("/silences", data={"csrf_token": token, "playbook": "x",
                                                     "hours": "2", "comment": "a comment"})
        assert ok.status_code < 500
