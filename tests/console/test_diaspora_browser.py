"""The diaspora map pages in a real browser (Playwright driving Debian's Chromium, never a
downloaded one; helpers of test_situation_browser): an engagement officer's draft with a
mistake names its line and the link selects that line in the editor; a valid draft shows what
it changes, is saved with a note and rolled back; a duty inspector reads the map, its history
and a diff at 375 px. No serious axe-core violation, at desktop width and at 375 px.
Screenshots go to tests/artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_diaspora_versions import FILE_TEXT, PLAYBOOKS, jamaica_links, line_of

from prevent.rules.playbooks import diaspora_versions as diaspora

from .conftest import Console

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs /usr/bin/chromium (apt-get install chromium)")

from .test_situation_browser import (  # noqa: E402 - after the skips, as that module needs them
    ARTIFACTS,
    chromium,
    fits,
    offline_page,
    serious_violations,
    served,
    sign_in,
)

expect = playwright_api.expect


async def test_an_officer_edits_and_rolls_back_and_an_inspector_reads_at_375(console: Console) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with console.db.transaction() as session:
        await diaspora.seed(session, PLAYBOOKS)
    bad = jamaica_links(FILE_TEXT, "black, christian, carribean")
    line = line_of(bad, "carribean")
    async with served(console) as base, chromium() as browser:
        page = await offline_page(browser, base)
        await sign_in(page, base, "engagement-officer")
        await page.get_by_role("link", name="Diaspora map").click()
        await expect(page.locator("#countries tr[data-country='JM']")).to_contain_text("black, christian")
        assert not await serious_violations(page)

        await page.get_by_role("link", name="Edit (new version)").click()
        await page.get_by_label("Diaspora map (YAML)").fill(bad)
        await page.get_by_role("button", name="Validate and compare").click()
        problems = page.locator("#problems")
        await expect(problems).to_contain_text(f"line {line}: countries.")
        await expect(problems).to_contain_text("unknown community 'carribean'")
        await problems.get_by_role("link", name=f"line {line}").click()
        selected = await page.evaluate("""() => { const s = document.getElementById('source');
            return s.value.substring(s.selectionStart, s.selectionEnd); }""")
        assert "carribean" in selected, selected  # the named line is selected in the editor
        assert not await serious_violations(page)

        await page.get_by_label("Diaspora map (YAML)").fill(
            jamaica_links(FILE_TEXT, "black, christian, haitian"))
        await page.get_by_role("button", name="Validate and compare").click()
        await expect(page.locator("#link-changes")).to_contain_text("JM: +haitian")
        await page.screenshot(path=str(ARTIFACTS / "diaspora-edit-desktop.png"), full_page=True)
        await page.get_by_label("Note for this version (required to save)").fill("Haitian families")
        await page.get_by_role("button", name="Save").click()
        await expect(page.get_by_role("status")).to_contain_text("Saved version 2 of the diaspora map")
        await expect(page.locator("#countries tr[data-country='JM']")).to_contain_text("haitian")
        await page.screenshot(path=str(ARTIFACTS / "diaspora-desktop.png"), full_page=True)

        await page.get_by_role("link", name="v1", exact=True).click()
        await page.get_by_label("Why put version 1 back in force (required)").fill("wrong link")
        await page.get_by_role("button", name="Roll back to version 1").click()
        await expect(page.get_by_role("status")).to_contain_text("Version 1 is back in force")
        await expect(page.locator("#history")).to_contain_text("rollback to v1: wrong link")
        await expect(page.locator("#countries tr[data-country='JM']")).not_to_contain_text("haitian")

        for width in (1280, 375):
            phone = await offline_page(browser, base, width=width)
            await sign_in(phone, base, "duty-inspector")
            for path in ("/diaspora", "/diaspora?from=2&to=3", "/diaspora?version=2"):
                await phone.goto(f"{base}{path}")
                assert await fits(phone) <= width, (path, width, await fits(phone))
                assert not await serious_violations(phone), (path, width)
            await expect(phone.get_by_role("link", name="Edit (new version)")).to_have_count(0)
            await expect(phone.get_by_role("button", name="Roll back to version 2")).to_have_count(0)
            if width == 375:
                await phone.goto(f"{base}/diaspora?from=2&to=3")
                await expect(phone.locator("#link-changes")).to_contain_text("JM: -haitian")
                await phone.screenshot(path=str(ARTIFACTS / "diaspora-375.png"), full_page=True)
            await phone.close()
        officer = await offline_page(browser, base, width=375)
        await sign_in(officer, base, "engagement-officer")
        await officer.goto(f"{base}/diaspora/edit")
        assert await fits(officer) <= 375
        assert not await serious_violations(officer)
        await officer.screenshot(path=str(ARTIFACTS / "diaspora-edit-375.png"), full_page=True)
