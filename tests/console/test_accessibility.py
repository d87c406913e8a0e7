"""The basics of accessibility on every console page, from the HTML: the page language is
set, there is one h1 and no heading level is skipped, and every form control has a label."""

from __future__ import annotations

from contextlib import aclosing
from html.parser import HTMLParser

from prevent.alerts import lifecycle
from prevent.users import Principal, Role

from .conftest import Console
from .test_patrol_extend import confirmed_alert_with_patrols

UNLABELLED_OK = {"hidden", "submit", "button"}


class PageAudit(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.lang: str | None = None
        self.headings: list[int] = []
        self.label_for: set[str] = set()
        self.controls: list[tuple[str, str | None]] = []  # (description, id)
        self.label_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        elif len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
            self.headings.append(int(tag[1]))
        elif tag == "label":
            self.label_depth += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        elif tag in ("input", "select", "textarea"):
            if tag == "input" and (a.get("type") or "text") in UNLABELLED_OK:
                return
            if self.label_depth or a.get("aria-label"):
                return
            self.controls.append((f"<{tag} name={a.get('name')}>", a.get("id")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.label_depth -= 1

    def problems(self) -> list[str]:
        found = [] if self.lang else ["<html> has no lang"]
        if self.headings.count(1) != 1:
            found.append(f"{self.headings.count(1)} h1 elements")
        for before, after in zip(self.headings, self.headings[1:], strict=False):
            if after > before + 1:
                found.append(f"heading h{before} followed by h{after}")
        found += [f"{d} has no label" for d, i in self.controls if i not in self.label_for]
        return found


def audit_html(html: str) -> list[str]:
    parser = PageAudit()
    parser.feed(html)
    return parser.problems()


def test_the_checker_catches_problems() -> None:
    bad = '<html><h1>a</h1><h3>b</h3><h1>c</h1><input name="q"></html>'
    assert audit_html(bad) == ["<html> has no lang", "2 h1 elements", "heading h1 followed by h3",
                               "<input name=q> has no label"]


async def test_every_page_passes_the_basic_checks(console: Console) -> None:
    async with console.db.transaction() as session:
        alert = await lifecycle.raise_exercise(
            session, Principal("duty-inspector", Role.DUTY_INSPECTOR),
            playbook_id="place-of-worship-attack", communities=["muslim"], severity=2,
            title="Exercise: arson at a mosque")
    pages = ["/", "/?status=proposed", f"/alerts/{alert.alert_id}", "/notices", "/patrols",
             "/patrols/zones/zone-north/sheet", "/audit", "/feeds", "/partners", "/playbooks",
             "/account/password", "/playbooks/backtest", "/playbooks/place-of-worship-attack",
             "/playbooks/place-of-worship-attack/saved?saved=1",
             f"/alerts/{await confirmed_alert_with_patrols(console)}"]  # with the extension form
    # Editing pages: engagement officers (and admins) only; duty inspectors get a (checked) 403.
    editing = ["/partners", "/playbooks/new", "/playbooks/place-of-worship-attack/edit",
               "/partners/new-site", "/partners/sites/site-masjid-riverside", "/partners/zones",
               "/partners/zones?zone=zone-north", "/partners/roster"]
    async with aclosing(console.client()) as anonymous:
        signin = await anonymous.get("/signin")
        assert audit_html(signin.text) == []
    for role in (Role.DUTY_INSPECTOR, Role.ENGAGEMENT_OFFICER):
        client, _ = await console.signed_in(role)
        async with aclosing(client):
            for path in pages + editing:
                response = await client.get(path)
                # The registry holds contact details: duty inspectors get a (checked) 403 page.
                expected = 403 if role is Role.DUTY_INSPECTOR and path in editing else 200
                assert response.status_code == expected, (role, path, response.status_code)
                assert audit_html(response.text) == [], (role, path)


async def test_forms_with_errors_and_results_pass_the_basic_checks(console: Console) -> None:
    """The editors re-rendered with validation problems, a backtest and field errors."""
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        edit = "/playbooks/place-of-worship-attack/edit"
        source = (await client.get("/playbooks/place-of-worship-attack")).text
        assert 'class="source"' in source
        responses = [
            await client.post(edit, data={"csrf_token": token, "source": "id: x\nmatch: 1\n",
                                          "action": "check"}),
            await client.post(edit, data={"csrf_token": token, "action": "check", "source": (
                await client.get(edit)).text.split('name="source"', 1)[1].split(">", 1)[1]
                .split("</textarea>", 1)[0].replace("&#39;", "'").replace("&gt;", ">")}),
            await client.post("/partners/sites", data={
                "csrf_token": token, "site_id": "", "name": "", "communities": "", "municipality": "",
                "lat": "x", "contact_rows": "1", "c0-contact_id": "c", "c0-email": "bad"}),
        ]
    for response in responses:
        assert response.status_code in (200, 422), response.text
        assert audit_html(response.text) == [], response.request.url
        assert 'name="csrf_token"' in response.text
    assert "line 2" in responses[0].text and "Backtest of the draft" in responses[1].text


async def test_the_users_page_passes_the_basic_checks(console: Console) -> None:
    client, token = await console.signed_in(Role.ADMIN)
    async with aclosing(client):
        listed = await client.get("/users")
        with_errors = await client.post("/users", data={"csrf_token": token, "name": "X",
                                                        "role": "viewer", "password": "short"})
    assert listed.status_code == 200 and with_errors.status_code == 422
    assert audit_html(listed.text) == [] and audit_html(with_errors.text) == []
