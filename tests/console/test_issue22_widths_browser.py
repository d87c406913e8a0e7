"""Issue 22, defect 8, in Chromium: the acknowledgement page with a long notice body and the
queue fit 375 px; /outbox with a webhook body as the webhook channel posts it fits a desktop
window (it was 5,074 px wide). Each fails on the code before the fix (9028090)."""

from __future__ import annotations

import json
from datetime import timedelta

from prevent.alerts import lifecycle
from prevent.contracts import utcnow
from prevent.partners.acklinks import AckLinks
from prevent.platform.demo.httpsink import ReceivedRequest
from prevent.platform.storage.tables import NoticeRow
from prevent.users import Principal, Role

from .conftest import Console
from .test_situation_browser import chromium, fits, offline_page, served, sign_in


async def _long_notice(console: Console, settings) -> tuple[str, str]:
    """A sent notice with a long body, and an exercise in the queue: (ack token, body)."""
    created = utcnow() - timedelta(hours=1)
    token = AckLinks.from_settings(settings).token("n-wide", created)
    body = ("Sample notice " + "word " * 20 + "https://example.org/" + "x" * 300
            + f"\nPlease confirm you received this notice: http://127.0.0.1:8000/ack/{token}\n")
    async with console.db.transaction() as session:
        session.add(NoticeRow(notice_id="n-wide", alert_id="alr-x", alert_revision=1,
                              kind="initial", site_id="site-masjid-riverside",
                              contact_id="contact-riverside-1", channel="email", language="en",
                              state="sent", attempts=1, subject="Notice", body=body,
                              created_at=created, updated_at=created, sent_at=created))
        await lifecycle.raise_exercise(
            session, Principal("duty-inspector", Role.DUTY_INSPECTOR),
            playbook_id="place-of-worship-attack", communities=["muslim", "jewish"], severity=3,
            title="Exercise: arson at a mosque")
    return token, body


def _too_wide(widths: dict[str, int]) -> dict[str, int]:
    return {page: width for page, width in widths.items() if width > int(page.rsplit(" ", 1)[1])}


async def test_defect_8_a_long_ack_page_and_the_queue_fit_375_px(console: Console,
                                                                 settings) -> None:
    token, _body = await _long_notice(console, settings)
    widths = {}
    async with served(console) as base, chromium() as browser:
        phone = await offline_page(browser, base, width=375)
        await phone.goto(f"{base}/ack/{token}")
        widths["ack page at 375"] = await fits(phone)
        await sign_in(phone, base, "duty-inspector")
        await phone.goto(f"{base}/?exercises=1")
        widths["queue at 375"] = await fits(phone)
    assert not _too_wide(widths), f"wider than the window (px): {_too_wide(widths)}"


async def test_defect_8_the_outbox_fits_a_desktop_window(console: Console,
                                                         settings) -> None:
    token, _body = await _long_notice(console, settings)
    # As notifiers/channels/webhook.py posts it: one line of JSON (the sample sink keeps it).
    webhook = json.dumps({"notice_id": "n-wide", "alert_id": "alr-x", "subject": "Notice",
                          "body": "Sample notice. " * 40,
                          "ack_url": f"http://127.0.0.1:8000/ack/{token}"}, sort_keys=True)
    console.app.state.console.http_outbox = lambda: [
        ReceivedRequest("/webhook/riverside", {"Idempotency-Key": "n-wide"}, webhook,
                        utcnow() - timedelta(minutes=5))]
    async with served(console) as base, chromium() as browser:
        desk = await offline_page(browser, base, width=1280)
        await sign_in(desk, base, "engagement-officer")
        outbox = await desk.goto(f"{base}/outbox")
        assert outbox is not None and outbox.status == 200
        assert "n-wide" in await desk.content()
        widths = {"outbox at 1280": await fits(desk)}
    assert not _too_wide(widths), f"wider than the window (px): {_too_wide(widths)}"
