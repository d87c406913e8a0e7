"""Issue 22 in a real browser (Playwright driving Debian's Chromium, never a downloaded one):
the alert page as the situation picture. With every request off this machine refused
(no tiles), the map still shows a marker per site and the outline; a failed webhook, an
acknowledged email and a recorded visit appear on the open page within 2 s without a
reload; another inspector's decision changes the open page; the queue and the alert page
fit 375 px. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import select, update

from prevent.alerts import lifecycle
from prevent.contracts import utcnow
from prevent.platform.storage.tables import NoticeRow, PatrolRow
from prevent.users import Principal, Role

from .conftest import PASSWORD, Console
from .test_patrol_extend import confirmed_alert_with_patrols

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs /usr/bin/chromium (apt-get install chromium)")
SITE = "site-masjid-riverside"
INSPECTOR = Principal("duty-inspector", Role.DUTY_INSPECTOR)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def served(console: Console) -> AsyncIterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(console.app, host="127.0.0.1", port=port,
                                           lifespan="off", log_level="warning",
                                           timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def chromium() -> AsyncIterator[object]:
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def offline_page(browser, base: str, width: int = 1280):
    """A page whose every request off 127.0.0.1 fails, as with no tile server reachable."""
    page = await browser.new_page(viewport={"width": width, "height": 900})
    blocked: list[str] = []

    async def only_loopback(route) -> None:
        if route.request.url.startswith(base):
            await route.continue_()
        else:
            blocked.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_loopback)
    page.blocked = blocked  # type: ignore[attr-defined]
    return page


async def sign_in(page, base: str, name: str) -> None:
    await page.goto(f"{base}/signin")
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/")


async def fits(page) -> int:
    """The page's width once its layout has settled: after the fonts and two animation frames,
    and the same in two readings 100 ms apart (a form's results laid out under a loaded
    machine once read 570 px at 375 and 375 px a moment later; a real overflow stays)."""
    settled = """async () => {
        await document.fonts.ready;
        await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
        return document.documentElement.scrollWidth; }"""
    width = await page.evaluate(settled)
    for _ in range(30):
        await page.wait_for_timeout(100)
        again = await page.evaluate(settled)
        if again == width:
            return width
        width = again
    return width


async def test_the_open_alert_page_follows_what_happens(console: Console) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    alert_id = await confirmed_alert_with_patrols(console)
    now = utcnow()
    async with console.db.transaction() as session:
        for nid, contact, channel in (("n-hook", "contact-riverside-ops", "webhook"),
                                      ("n-mail", "contact-riverside-1", "email")):
            session.add(NoticeRow(notice_id=nid, alert_id=alert_id, alert_revision=2,
                                  kind="initial", site_id=SITE, contact_id=contact,
                                  channel=channel, language="en", state="sending", attempts=1,
                                  created_at=now, updated_at=now))
        plan = (await session.execute(select(PatrolRow).where(PatrolRow.site_id == SITE))
                ).scalars().one()
    async with served(console) as base, chromium() as browser:
        page = await offline_page(browser, base)
        await sign_in(page, base, "duty-inspector")
        await page.goto(f"{base}/alerts/{alert_id}")
        # The map without a single tile: a vector marker per site with coordinates, the outline.
        sites = await page.evaluate(
            "JSON.parse(document.getElementById('map-data').dataset.map).sites.length")
        assert sites >= 1
        markers = page.locator("#alert-map path.site-marker")
        await playwright_api.expect(markers).to_have_count(sites)
        await playwright_api.expect(page.locator("#alert-map path.map-outline")).to_have_count(1)
        assert any("tile.openstreetmap.org" in u for u in page.blocked), page.blocked
        await page.wait_for_timeout(1200)  # the stream's first event has arrived

        async with console.db.transaction() as session:  # the notifier's outcome, meanwhile
            later = utcnow()
            await session.execute(update(NoticeRow).where(NoticeRow.notice_id == "n-hook").values(
                state="failed", error="HTTP 410 Gone from the partner's server", updated_at=later))
            await session.execute(update(NoticeRow).where(NoticeRow.notice_id == "n-mail").values(
                state="acknowledged", sent_at=later - timedelta(seconds=5), acknowledged_at=later,
                acknowledged_via="link", updated_at=later))
        hook = page.locator('li[data-notice-id="n-hook"]')
        await playwright_api.expect(hook).to_have_attribute("data-state", "failed", timeout=2000)
        await playwright_api.expect(hook).to_contain_text("HTTP 410 Gone")
        await playwright_api.expect(hook.get_by_role("button", name="Resend")).to_be_visible()
        await playwright_api.expect(page.locator('li[data-notice-id="n-mail"]')).to_have_attribute(
            "data-state", "acknowledged", timeout=2000)
        # One contact acknowledged: the site is reached (its failed webhook still shows above).
        site_row = page.locator(f'#site-states tr[data-site-id="{SITE}"]')
        await playwright_api.expect(site_row).to_have_attribute("data-state", "acknowledged")
        await playwright_api.expect(page.locator('#alert-map path.site-marker.st-acknowledged')
                                    ).to_have_count(1)

        async with console.db.transaction() as session:  # a visit recorded elsewhere (the API)
            from notifiers import patrol_exports
            await patrol_exports.record_visit(session, plan.assignment_id, visited_at=utcnow(),
                                              note="door checked", actor="pc.smith")
        timeline = page.locator("#timeline")
        await playwright_api.expect(timeline).to_contain_text("door checked", timeout=2000)
        await playwright_api.expect(page.locator(f'#site-states tr[data-site-id="{SITE}"]')
                                    ).to_contain_text("visits: 1")
        assert page.url == f"{base}/alerts/{alert_id}", "no reload, no navigation"
        await page.screenshot(path=str(ARTIFACTS / "alert-situation-desktop.png"), full_page=True)

        # Record a visit from the page itself, with the keyboard.
        await page.get_by_label("Note").first.fill("second round")
        await page.get_by_label("Note").first.press("Enter")
        await playwright_api.expect(page.locator("#live-alert")).to_contain_text("Visit recorded")
        await playwright_api.expect(page.locator("#timeline")).to_contain_text("second round")

        phone = await offline_page(browser, base, width=375)
        await sign_in(phone, base, "duty-inspector")
        for path in ("/", f"/alerts/{alert_id}", "/patrols", "/notices", "/audit"):
            await phone.goto(f"{base}{path}")
            wide = await phone.evaluate("""() => Array.from(document.querySelectorAll('body *'))
                .filter(e => e.getBoundingClientRect().right > 376 && !e.closest('.table-wrap'))
                .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id + ' '
                                 + Math.round(e.getBoundingClientRect().right))""")
            assert await fits(phone) <= 375, (path, await fits(phone), wide)
        await phone.goto(f"{base}/alerts/{alert_id}")
        await phone.screenshot(path=str(ARTIFACTS / "alert-situation-375.png"), full_page=True)


async def test_another_inspectors_decision_changes_the_open_page(console: Console) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with console.db.transaction() as session:
        proposed = await lifecycle.raise_exercise(
            session, INSPECTOR, playbook_id="place-of-worship-attack", communities=["muslim"],
            severity=3, title="Exercise: arson at a mosque")
    async with served(console) as base, chromium() as browser:
        page = await offline_page(browser, base)
        await sign_in(page, base, "duty-inspector")
        await page.goto(f"{base}/alerts/{proposed.alert_id}")
        await playwright_api.expect(page.locator("#alert-status")).to_have_text("proposed")
        await playwright_api.expect(page.get_by_role("button", name="Confirm alert")).to_be_visible()
        await page.wait_for_timeout(1200)
        await lifecycle.decide(console.db, Principal("other-inspector", Role.DUTY_INSPECTOR),
                               proposed.alert_id, action="confirm",
                               expected_revision=proposed.revision)
        await playwright_api.expect(page.locator("#alert-status")).to_have_text("confirmed",
                                                                               timeout=3000)
        await playwright_api.expect(page.get_by_role("button", name="Confirm alert")).to_have_count(0)
        await playwright_api.expect(page.locator("#live-alert")).to_contain_text("other-inspector")
        await page.screenshot(path=str(ARTIFACTS / "alert-decided-elsewhere.png"), full_page=True)


async def test_unticking_a_site_marks_it_left_out_in_the_preview(console: Console) -> None:
    async with console.db.transaction() as session:
        proposed = await lifecycle.raise_exercise(
            session, INSPECTOR, playbook_id="place-of-worship-attack", communities=["muslim"],
            severity=3, title="Exercise: arson at a mosque")
    async with served(console) as base, chromium() as browser:
        page = await offline_page(browser, base)
        await sign_in(page, base, "duty-inspector")
        await page.goto(f"{base}/alerts/{proposed.alert_id}")
        row = page.locator(f'#preview-notices tr[data-site-id="{SITE}"]').first
        await playwright_api.expect(row).not_to_have_class("left-out")
        box = page.locator(f"#site-{SITE}")
        await box.focus()
        await page.keyboard.press("Space")  # the keyboard alone
        await playwright_api.expect(row).to_have_class("left-out")
        await playwright_api.expect(row).to_contain_text("left out")
        await page.keyboard.press("Space")
        await playwright_api.expect(row).not_to_have_class("left-out")


AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"


async def serious_violations(page) -> list[str]:
    """axe-core run in the page (evaluated over the DevTools protocol: the console's CSP is
    not loosened for it); violations of impact serious or critical."""
    await page.evaluate(AXE.read_text(encoding="utf-8"))
    found = await page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']}))
        .violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '))""")
    return list(found)


async def test_no_serious_accessibility_violation_on_any_page(console: Console) -> None:
    alert_id = await confirmed_alert_with_patrols(console)
    async with served(console) as base, chromium() as browser:
        for width in (1280, 375):
            page = await offline_page(browser, base, width=width)
            await sign_in(page, base, "duty-inspector")
            problems = {}
            for path in ("/", "/?status=all&exercises=1", f"/alerts/{alert_id}", "/notices",
                         "/patrols", "/playbooks", "/feeds", "/silences", "/deadletters", "/audit"):
                await page.goto(f"{base}{path}")
                if found := await serious_violations(page):
                    problems[path] = found
                assert await fits(page) <= width, (path, width)
            assert not problems, (width, problems)
            await page.close()
