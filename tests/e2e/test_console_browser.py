"""The console in a real browser (Playwright driving Debian's Chromium) against the whole
system on an embedded broker: live queue, evidence and preview, a narrowed confirmation,
notices and patrols; a viewer cannot confirm; an engagement officer edits a playbook."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest
import uvicorn

from prevent import users
from prevent.cli.services import incident_publisher, running_system
from prevent.users import Role
from prevent.web.app import create_app

from .test_decisions import incident

pytestmark = pytest.mark.e2e
playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "browser test password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def sign_in(page, base: str, name: str) -> None:  # playwright Page
    await page.goto(f"{base}/")
    assert "/signin" in page.url  # anonymous: sent to sign in
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
async def test_inspector_confirms_in_the_browser_and_a_viewer_cannot(settings) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    both = incident("browser-arson", "Arson attacks on a mosque and a synagogue leave two injured",
                    "Attackers set fire to a mosque and a nearby synagogue overnight; "
                    "two people were injured.")
    async with running_system(settings.model_copy(update={"demo": True}), feeds=[]) as system:
        async with system.ctx.db.transaction() as session:
            await users.add_user(session, "insp.browser", Role.DUTY_INSPECTOR, PASSWORD, actor="test")
            await users.add_user(session, "viewer.browser", Role.VIEWER, PASSWORD, actor="test")
            await users.add_user(session, "officer.browser", Role.ENGAGEMENT_OFFICER, PASSWORD,
                                 actor="test")
        app = create_app(None)  # type: ignore[arg-type] - state set directly, no lifespan
        app.state.console = system.console_state()
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                               log_level="warning", timeout_graceful_shutdown=1))
        serving = asyncio.create_task(server.serve())
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):  # up to 10 s for uvicorn to bind
                if server.started:
                    break
                await asyncio.sleep(0.05)
            async with playwright_api.async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
                try:
                    await inspector_flow(browser, base, incident_publisher(system.ctx), both)
                    await viewer_flow(browser, base)
                    await officer_flow(browser, base, system.ctx)
                finally:
                    await browser.close()
        finally:
            server.should_exit = True
            await serving


async def inspector_flow(browser, base: str, publish, both) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await sign_in(page, base, "insp.browser")
    queue = page.locator("#queue-rows")
    await page.wait_for_timeout(1500)  # the stream's first (initial) event has arrived
    await publish(both)
    row = queue.locator("tr.new", has_text="mosque and a synagogue")
    await row.wait_for(timeout=30_000)  # appeared live, without a reload
    await playwright_api.expect(page.locator("#live-status")).to_contain_text("new alert")
    await page.screenshot(path=str(ARTIFACTS / "console-queue.png"), full_page=True)

    await row.get_by_role("link").click()
    await playwright_api.expect(page.locator("h1")).to_contain_text("mosque and a synagogue")
    marks = await page.locator(".report mark").all_inner_texts()
    assert {"mosque", "synagogue"} <= {m.lower() for m in marks}, marks
    preview = page.locator("#preview-notices")
    await playwright_api.expect(preview).to_contain_text("Riverside")
    await playwright_api.expect(preview).to_contain_text("Hillview")
    await page.screenshot(path=str(ARTIFACTS / "console-alert-detail.png"), full_page=True)

    await page.locator("#confirm-form").get_by_label("Hillview", exact=False).first.uncheck()
    await page.get_by_label("Note (optional)").fill("Hillview already briefed in person")
    await page.get_by_role("button", name="Confirm alert").click()
    await playwright_api.expect(page.locator("#alert-status")).to_have_text("confirmed")
    await playwright_api.expect(page.locator("body")).to_contain_text("insp.browser")

    await page.get_by_role("link", name="Notices for this alert").click()
    for _ in range(60):  # the notifiers work asynchronously over Kafka
        if await page.locator("table.notices tbody tr").count():
            break
        await page.wait_for_timeout(500)
        await page.reload()
    notices = page.locator("table.notices")
    await playwright_api.expect(notices).to_contain_text("site-masjid-riverside")
    assert "site-synagogue-hillview" not in await notices.inner_text()

    await page.get_by_role("link", name="Patrol board").first.click()
    for _ in range(60):
        if await page.locator("section.zone").count():
            break
        await page.wait_for_timeout(500)
        await page.reload()
    board = page.locator("main")
    await playwright_api.expect(board).to_contain_text("Zone zone-north")
    assert "Hillview" not in await board.inner_text()
    await page.screenshot(path=str(ARTIFACTS / "console-patrol-board.png"), full_page=True)
    await page.close()


async def viewer_flow(browser, base: str) -> None:
    page = await browser.new_page()
    await sign_in(page, base, "viewer.browser")
    await page.goto(f"{base}/?status=all")  # decided alerts are out of the default view
    link = page.locator("#queue-rows a", has_text="mosque and a synagogue")
    await link.click()
    await playwright_api.expect(page.locator("h1")).to_contain_text("mosque and a synagogue")
    assert await page.get_by_role("button", name="Confirm alert").count() == 0
    alert_path = page.url.removeprefix(base)
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    response = await page.request.post(f"{base}{alert_path}/confirm",
                                       form={"csrf_token": token, "revision": "1"})
    assert response.status == 403
    await page.close()


async def officer_flow(browser, base: str, ctx) -> None:
    """An engagement officer edits a playbook: a bad draft shows its line, a good one is
    backtested, saved with a note, and the running rules consumer switches to it."""
    pid = "place-of-worship-attack"
    before = ctx.playbooks.compiled.source.version_of(pid)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await sign_in(page, base, "officer.browser")
    await page.get_by_role("link", name="Playbooks").click()
    await page.get_by_role("link", name=pid).click()
    await page.get_by_role("link", name="Edit (new version)").click()
    editor = page.get_by_label("Playbook (YAML)")
    source = await editor.input_value()
    await editor.fill(source.replace("min_severity: 2", "min_severity: 9"))
    await page.get_by_role("button", name="Validate and backtest").click()
    line = next(n for n, text in enumerate(source.splitlines(), 1) if "min_severity: 2" in text)
    problem = page.locator("#problems").get_by_role("link", name=f"line {line}")
    await playwright_api.expect(problem).to_be_visible()
    await problem.click()  # playbook_editor.js selects the line in the textarea
    selected = await editor.evaluate("t => t.value.slice(t.selectionStart, t.selectionEnd)")
    assert "min_severity: 9" in selected, selected
    await editor.fill(source.replace("priority: 80", "priority: 81"))
    await page.get_by_role("button", name="Validate and backtest").click()
    await playwright_api.expect(page.locator("#backtest-summary")).to_contain_text("would have fired")
    await page.get_by_label("Note for this version").fill("raise priority over tension playbooks")
    await page.get_by_role("button", name="Save").click()
    await playwright_api.expect(page.locator("main")).to_contain_text(f"Saved version {before + 1}")
    await page.screenshot(path=str(ARTIFACTS / "console-playbook-saved.png"), full_page=True)
    for _ in range(100):  # the announcement travels over Kafka to the rules consumer
        if ctx.playbooks.compiled.source.version_of(pid) == before + 1:
            break
        await asyncio.sleep(0.1)
    assert ctx.playbooks.compiled.source.version_of(pid) == before + 1
    assert ctx.playbooks.compiled.source.get(pid).priority == 81
    metrics = await (await page.request.get(f"{base}/metrics")).text()
    assert re.search(r'prevent_consumer_lag\{group="prevent-rules",partition="\d+",'
                     r'topic="prevent\.incidents\.v1"\}', metrics)
    await page.close()
