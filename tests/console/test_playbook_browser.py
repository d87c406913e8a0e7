"""The playbook page and editor in a real browser (Playwright driving Debian's Chromium, never a
downloaded one; helpers of test_situation_browser): validating a draft shows the notice it
would send, in English and French, for the fictional sample site; the playbook page shows the
notice of a version and rolls back to an earlier version in one step, with a note; a duty
inspector reads the preview but is offered no rollback. At 1280 and 375 px, no horizontal
scrolling and no serious axe-core violation. Screenshots go to tests/artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest

from prevent.rules.playbooks import store

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
PID = "place-of-worship-attack"


async def test_preview_and_one_step_rollback_at_1280_and_375(console: Console) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with console.db.transaction() as session:
        v1 = next(r for r in await store.latest_versions(session) if r.playbook_id == PID).version
    async with served(console) as base, chromium() as browser:
        for width in (1280, 375):
            suffix = "desktop" if width == 1280 else "375"
            page = await offline_page(browser, base, width=width)
            await sign_in(page, base, "engagement-officer")
            await page.goto(f"{base}/playbooks/{PID}/edit")
            source = await page.get_by_label("Playbook (YAML)").input_value()
            await page.get_by_label("Playbook (YAML)").fill(
                source.replace("template: place_of_worship_attack", "template: threat_level"))
            await page.get_by_role("button", name="Validate and backtest").click()
            await expect(page.get_by_role("status")).to_contain_text("The draft is valid")
            preview = page.locator("#notice-preview")
            await expect(preview).to_contain_text("The notice the draft would send")
            await expect(preview.locator("[data-channel=email][data-language=en]")).to_contain_text(
                "The national terrorism threat level has changed")
            await expect(preview.locator("[data-channel=email][data-language=fr]")).to_contain_text(
                "Bonjour Sam Example")
            await expect(preview.locator("[data-channel=sms][data-language=en]")).to_contain_text("ACK ")
            await preview.scroll_into_view_if_needed()
            assert await fits(page) <= width, (width, await fits(page))
            assert not await serious_violations(page), width
            await page.screenshot(path=str(ARTIFACTS / f"playbook-preview-edit-{suffix}.png"),
                                  full_page=True)

            if width == 1280:  # save once, then roll back from the playbook page
                await page.get_by_label("Note for this version (required to save)").fill(
                    "threat-level wording")
                await page.get_by_role("button", name="Save").click()
                await expect(page.get_by_role("status")).to_contain_text(
                    f"Saved version {v1 + 1}")
            else:
                await page.goto(f"{base}/playbooks/{PID}")
            await expect(page.locator("#notice-preview")).to_contain_text(
                "The national terrorism threat level has changed" if width == 1280 else
                "Riverside Islamic Centre (sample)")
            assert await fits(page) <= width, (width, await fits(page))
            assert not await serious_violations(page), width
            await page.screenshot(path=str(ARTIFACTS / f"playbook-preview-{suffix}.png"),
                                  full_page=True)

            if width == 1280:
                await expect(page.get_by_role("button", name=f"Roll back to v{v1 + 1}")).to_have_count(0)
                await page.get_by_label(f"Why put version {v1} back in force (required)").fill(
                    "the generic wording was right")
                await page.screenshot(path=str(ARTIFACTS / "playbook-rollback-desktop.png"),
                                      full_page=True)
                await page.get_by_role("button", name=f"Roll back to v{v1}").click()
                await expect(page.get_by_role("status")).to_contain_text(
                    f"Version {v1} of {PID} is back in force, stored as version {v1 + 2}")
                await expect(page.locator("#history")).to_contain_text(
                    f"rollback to v{v1}: the generic wording was right")
                await expect(page.locator("#notice-preview")).not_to_contain_text(
                    "The national terrorism threat level has changed")
                await page.screenshot(path=str(ARTIFACTS / "playbook-rollback-done-desktop.png"),
                                      full_page=True)
            else:
                await expect(page.get_by_role("button", name=f"Roll back to v{v1 + 1}")).to_be_visible()
                assert await fits(page) <= width, (width, await fits(page))
                await page.screenshot(path=str(ARTIFACTS / "playbook-rollback-375.png"),
                                      full_page=True)
            await page.close()

            reader = await offline_page(browser, base, width=width)
            await sign_in(reader, base, "duty-inspector")
            await reader.goto(f"{base}/playbooks/{PID}")
            await expect(reader.locator("#notice-preview [data-language=fr]").first).to_be_visible()
            await expect(reader.get_by_role("button", name=f"Roll back to v{v1}")).to_have_count(0)
            assert await fits(reader) <= width, (width, await fits(reader))
            assert not await serious_violations(reader), width
            await reader.close()
