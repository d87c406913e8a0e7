"""Issue 22 in a real browser (Playwright driving Debian's Chromium, never a downloaded one),
at desktop width and 375 px, every request off this machine refused, axe-core checking each
page: defect 2, a partner's concern from the acknowledgement page on a phone to the duty
inspector's Decide box (the reporting site, its patrol, the reporter to call back, the
escalation's due time) and a keyboard-only confirmation; defect 4, a bad CSV import that
lists every problem at once under the file's own name. Screenshots go to tests/artifacts/."""

from __future__ import annotations

from datetime import timedelta

import pytest

from prevent.contracts import utcnow
from prevent.partners.acklinks import AckLinks
from prevent.partners.registry import PHONE_HELP
from prevent.platform.storage.tables import NoticeRow

from .conftest import Console
from .test_issue22_import import BAD, GOOD, expected
from .test_issue22_partner_concern import partner_report_alert
from .test_situation_browser import (
    ARTIFACTS,
    CHROMIUM,
    chromium,
    fits,
    offline_page,
    serious_violations,
    served,
    sign_in,
)

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs /usr/bin/chromium (apt-get install chromium)")
SITE = "site-masjid-riverside"
WIDTHS = ((1280, "desktop"), (375, "375"))


async def wide_elements(page) -> list[str]:
    return await page.evaluate("""() => Array.from(document.querySelectorAll('body *'))
        .filter(e => e.getBoundingClientRect().right > innerWidth + 1 && !e.closest('.table-wrap'))
        .slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)""")


async def checked(page, width: int, what: str) -> None:
    """No horizontal scrolling at ``width``, no serious accessibility violation."""
    assert await fits(page) <= width, (what, width, await fits(page), await wide_elements(page))
    assert await serious_violations(page) == [], (what, width)


async def test_defect_2_a_concern_from_a_phone_reaches_the_decide_box(console: Console,
                                                                      settings) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    now = utcnow() - timedelta(hours=1)
    async with console.db.transaction() as session:  # the contact holds an earlier notice
        session.add(NoticeRow(notice_id="n-earlier", alert_id="alr-earlier", alert_revision=1,
                              kind="initial", site_id=SITE, contact_id="contact-riverside-1",
                              channel="email", language="en", state="sent", attempts=1,
                              subject="Advisory: an event abroad", body="Dear Sam,\nAn event.",
                              created_at=now, updated_at=now, sent_at=now))
    token = AckLinks.from_settings(settings).token("n-earlier", now)
    async with served(console) as base, chromium() as browser:
        # The centre's contact, on a phone, reports an urgent concern from the notice's page.
        contact = await offline_page(browser, base, width=375)
        await contact.goto(f"{base}/ack/{token}")
        await checked(contact, 375, "acknowledgement page")
        await contact.get_by_label("Describe what is happening").fill(
            "A man has been filming our entrance for an hour")
        await contact.get_by_label("Urgent").check()
        await contact.get_by_role("button", name="Send report").click()
        await expect(contact.locator("main")).to_contain_text("reached the duty inspector")
        await checked(contact, 375, "report sent")
        await contact.screenshot(path=str(ARTIFACTS / "partner-concern-report-375.png"),
                                 full_page=True)

        alert_id = await partner_report_alert(console, settings)  # the rules stage

        for width, label in reversed(WIDTHS):  # the phone first: the desktop confirms
            page = await offline_page(browser, base, width=width)
            await sign_in(page, base, "duty-inspector")
            await page.goto(f"{base}/alerts/{alert_id}")
            # The map: the reporting site's marker, without a single tile.
            await expect(page.locator("#alert-map path.site-marker")).to_have_count(1)
            await expect(page.locator("#preview-notices")).not_to_contain_text("Nobody would be notified")
            await expect(page.locator("#preview-patrols")).not_to_contain_text("No patrols would")
            await expect(page.locator("#preview-patrols")).to_contain_text("every 60 min")
            # The Decide box: the reporting site and its patrol, ticked; whom to call back.
            await expect(page.get_by_label("Riverside Islamic Centre (sample)", exact=True)
                         ).to_be_checked()
            await expect(page.get_by_label("Patrol Riverside Islamic Centre (sample)",
                                        exact=True)).to_be_checked()
            call_back = page.locator("#call-back")
            await expect(call_back).to_contain_text("Sam Example")
            await expect(call_back.get_by_role("link", name="+1 555 0100")).to_have_attribute(
                "href", "tel:+1 555 0100")
            await expect(page.locator("#escalation")).to_contain_text("level 1")
            await expect(page.locator('#escalation [data-level="1"]')).to_have_attribute(
                "data-state", "due")
            await checked(page, width, f"alert page ({label})")
            await page.screenshot(path=str(ARTIFACTS / f"partner-concern-decide-{label}.png"),
                                  full_page=True)
            if width != 1280:
                await page.close()
                continue
            # Confirmed like any other alert, with the keyboard alone.
            await page.get_by_role("button", name="Confirm alert").focus()
            await page.keyboard.press("Enter")
            await page.wait_for_url(f"{base}/alerts/{alert_id}?decided=confirm")
            await expect(page.locator("#alert-status")).to_have_text("confirmed")
            await expect(page.locator("#live-alert")).to_contain_text("Alert confirmed")
            await expect(page.locator('#escalation [data-level="1"]')).not_to_have_attribute(
                "data-state", "fired")
            await page.close()


async def test_defect_4_a_bad_import_lists_every_problem_at_once(console: Console) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    name = "partners-march.csv"
    async with served(console) as base, chromium() as browser:
        for width, label in WIDTHS:
            page = await offline_page(browser, base, width=width)
            await sign_in(page, base, "engagement-officer")
            await page.goto(f"{base}/partners")
            await page.get_by_label("CSV file").set_input_files(
                {"name": name, "mimeType": "text/csv", "buffer": BAD.encode()})
            await page.get_by_role("button", name="Import").click()
            problems = page.get_by_role("alert")
            await expect(problems).to_contain_text("Nothing was imported")
            for problem in expected(name):  # one upload: every kind of problem, every row
                await expect(problems).to_contain_text(problem)
            await expect(problems).to_contain_text(PHONE_HELP)
            await expect(problems).not_to_contain_text("upload.csv")
            await expect(problems).not_to_contain_text("String should match pattern")
            await checked(page, width, f"import problems ({label})")
            await page.screenshot(path=str(ARTIFACTS / f"partner-import-problems-{label}.png"),
                                  full_page=True)
            await page.close()
        # One round of fixes is enough.
        page = await offline_page(browser, base)
        await sign_in(page, base, "engagement-officer")
        await page.goto(f"{base}/partners")
        await page.get_by_label("CSV file").set_input_files(
            {"name": name, "mimeType": "text/csv", "buffer": GOOD.encode()})
        await page.get_by_role("button", name="Import").click()
        await expect(page.get_by_role("status")).to_contain_text("Imported")
        await expect(page.get_by_role("alert")).to_have_count(0)
