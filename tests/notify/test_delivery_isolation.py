"""Issue 23, finding M1 and delivery isolation: whatever one contact, channel or template
raises fails that notice (with its reason on the row and the console) and never another;
an alert's notices go out concurrently and a slow receiver holds only its own notice;
retries are due times picked up by the scanner, bounded; sends are claimed once.

Real SMTP server and HTTP receivers on loopback throughout."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from notifiers.centre import Outcome, RetryPolicy, classify
from notifiers.scanner import Scanner
from prevent import users
from prevent.contracts import DEADLETTER, Alert, utcnow
from prevent.notices.channel import SendResult
from prevent.notices.templates import NoticeRenderer
from prevent.platform.config import Settings
from prevent.platform.messaging import TransientError
from prevent.platform.netguard import BlockedAddress
from prevent.platform.netutil import free_port
from prevent.platform.runtime import PlaybookHolder
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import Contact, NoticeRow, OutboxRow
from prevent.users import Role
from prevent.web.app import ConsoleState, create_app

from .helpers import (
    ScriptedHttp,
    ScriptedSmtp,
    alert,
    contact,
    load_registry,
    notifier,
    playbook,
    registry,
    settle,
)

BROKEN_URL = "http://0177.0.0.1/hook"  # passed the old ^https?:// check; httpx raises InvalidURL
INJECTED_TITLE = "Drill at the mosque\r\nBcc: someone@evil.example\r\nX-Injected: yes"


async def rows(db: Database) -> dict[str, NoticeRow]:
    async with db.transaction() as session:
        return {r.contact_id: r for r in (await session.execute(select(NoticeRow))).scalars()}


async def store_unchecked(db: Database, contact_id: str, **values: object) -> None:
    """What an old registry (before the edge checks) may hold: written past validation."""
    async with db.transaction() as session:
        await session.execute(update(Contact).where(Contact.contact_id == contact_id).values(**values))


def titled(a: Alert, title: str) -> Alert:
    return a.model_copy(update={"title": title})


@asynccontextmanager
async def console_as(db: Database, settings: Settings, role: Role) -> AsyncIterator[httpx.AsyncClient]:
    async with db.transaction() as session:
        name = role.value.replace('_', '-') + '-isolation'
        await users.add_user(session, name, role, "a long enough test password", actor="test")
        token = await users.issue_token(session, name, actor="test")
    app = create_app(None)  # type: ignore[arg-type] - state set directly, no lifespan
    app.state.console = ConsoleState(db=db, settings=settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


async def test_a_broken_address_and_a_title_with_control_characters_fail_only_their_notice(
        db: Database, settings: Settings) -> None:
    """Acceptance 1 of issue 23 (M1): every other notice of the alert is delivered, once; the
    broken one is failed with its reason, which the console's notices page shows."""
    with ScriptedSmtp() as smtp, ScriptedHttp() as http:
        await load_registry(db, registry([
            contact(1), contact(2, language="fr"), contact(3),
            contact(4, channels=["webhook"], webhook_url=f"{http.url}/good"),
            contact(5, channels=["webhook"], webhook_url=f"{http.url}/stored-broken")], sites=2))
        await store_unchecked(db, "contact-005", webhook_url=BROKEN_URL)
        s = settings.model_copy(update={"smtp_port": smtp.port, "allow_private_addresses": True})
        n = notifier(db, s)
        a = titled(alert(exercise=True), INJECTED_TITLE)
        assert await n.handle_alert(a, playbook()) == 4
        assert await n.handle_alert(a, playbook()) == 0  # the redelivered event sends nothing
        assert await settle(n) == 0
    by_contact = await rows(db)
    assert {c: r.state for c, r in by_contact.items()} == {
        "contact-001": "sent", "contact-002": "sent", "contact-003": "sent", "contact-004": "sent",
        "contact-005": "failed"}
    broken = by_contact["contact-005"]
    assert broken.attempts == 1
    assert "webhook URL refused" in (broken.error or "") and "0177.0.0.1" in (broken.error or "")
    # Delivered once each; the title's CR/LF became spaces: one Subject line, no added header.
    assert len(smtp.received) == 3 and len(set(smtp.message_ids())) == 3
    for mail in smtp.received:
        assert mail["Bcc"] is None and mail["X-Injected"] is None
        assert "\r" not in str(mail["Subject"]) and "\n" not in str(mail["Subject"])
        assert str(mail["Subject"]).startswith("[EXERCISE]")
    assert [r.path for r in http.received] == ["/good"]
    async with db.transaction() as session:
        dead = (await session.execute(select(OutboxRow).where(
            OutboxRow.topic == DEADLETTER.name))).scalars().all()
    assert [d.key for d in dead] == [broken.notice_id]
    async with console_as(db, s, Role.DUTY_INSPECTOR) as client:
        page = await client.get(f"/notices?alert={a.alert_id}")
    assert page.status_code == 200
    row_html = page.text[page.text.index("<td>contact-005</td>"):].split("</tr>", 1)[0]
    assert "badge failed" in row_html
    assert "0177.0.0.1 reads as an IPv4 address but is not in its standard form" in row_html


async def test_a_webhook_url_httpx_cannot_parse_fails_only_its_notice(
        db: Database, settings: Settings) -> None:
    """M1 as found: ``http://0177.0.0.1/hook`` made httpx raise InvalidURL out of the handler."""
    with ScriptedSmtp() as smtp:
        await load_registry(db, registry([contact(1), contact(2, channels=["webhook"],
                                                               webhook_url="https://h.example/x")]))
        await store_unchecked(db, "contact-002", webhook_url=BROKEN_URL)
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        assert await n.handle_alert(alert(), playbook()) == 1
    by_contact = await rows(db)
    assert (by_contact["contact-001"].state, by_contact["contact-002"].state) == ("sent", "failed")
    assert "0177.0.0.1" in (by_contact["contact-002"].error or "")
    assert len(smtp.received) == 1


async def test_a_template_that_raises_fails_only_its_notice(db: Database, settings: Settings) -> None:
    class FailsInFrench(NoticeRenderer):
        def render(self, name, language, context):
            if language == "fr":
                raise RuntimeError("template exploded")
            return super().render(name, language, context)

    await load_registry(db, registry([contact(1), contact(2, language="fr"), contact(3)]))
    with ScriptedSmtp() as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        n.renderer = FailsInFrench(settings.playbooks_dir / "templates")
        assert await n.handle_alert(alert(), playbook()) == 2
        assert await n.handle_alert(alert(), playbook()) == 0
    by_contact = await rows(db)
    assert [by_contact[c].state for c in ("contact-001", "contact-002", "contact-003")] == [
        "sent", "failed", "sent"]
    assert by_contact["contact-002"].error == (
        "the notice could not be rendered: RuntimeError: template exploded")
    assert len(smtp.received) == 2


async def test_an_address_the_email_library_refuses_fails_only_its_notice(
        db: Database, settings: Settings) -> None:
    await load_registry(db, registry([contact(1), contact(2)]))
    await store_unchecked(db, "contact-002", email="person2@example.org\r\nBcc: x@evil.example")
    with ScriptedSmtp() as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        assert await n.handle_alert(alert(), playbook()) == 1
    by_contact = await rows(db)
    assert (by_contact["contact-001"].state, by_contact["contact-002"].state) == ("sent", "failed")
    assert (by_contact["contact-002"].error or "").startswith(
        "the message could not be built or addressed: ValueError")
    assert len(smtp.received) == 1 and smtp.received[0]["Bcc"] is None


async def test_a_webhook_timing_out_holds_neither_the_handler_nor_the_other_notices(
        db: Database, settings: Settings) -> None:
    """The Kafka handler's call returns once the notices are planned; the others arrive while
    the hanging partner's request is still open; its timeout schedules a retry (a due time)."""
    with ScriptedSmtp() as smtp, ScriptedHttp() as http:
        await load_registry(db, registry([
            contact(1, channels=["webhook"], webhook_url=f"{http.url}/hang"),
            contact(2), contact(3), contact(4, channels=["webhook"], webhook_url=f"{http.url}/ok")],
            sites=2))
        s = settings.model_copy(update={"smtp_port": smtp.port, "allow_private_addresses": True,
                                        "http_timeout_seconds": 6.0})
        n = notifier(db, s, retry=RetryPolicy(base_delay=60))  # the retry is 30-60 s away
        loop = asyncio.get_running_loop()
        started = loop.time()
        await n.handle_alert(alert(), playbook(), wait=False)
        assert loop.time() - started < 1.0
        # Well before the hanging request's 6 s timeout (under a fully loaded machine they took
        # 3 s once, when this timeout was 3 s): what proves they were not held back is the
        # request still open and its notice still sending when they have arrived, just below.
        while len(smtp.received) < 2 or len(http.received) < 1:
            assert loop.time() - started < 5.0, "the other notices were held back"
            await asyncio.sleep(0.02)
        assert len(http.hung) == 1  # the hanging request is open meanwhile
        assert (await rows(db))["contact-001"].state == "sending"
        while (await rows(db))["contact-001"].state == "sending":
            assert loop.time() - started < 20, "the timeout did not end the attempt"
            await asyncio.sleep(0.1)
        await n.aclose()
    hanging = (await rows(db))["contact-001"]
    assert (hanging.state, hanging.refusals) == ("queued", 1)
    assert hanging.error == "will retry: webhook timed out: ReadTimeout"
    assert hanging.next_attempt_at is not None and hanging.next_attempt_at > utcnow()
    assert {r.state for c, r in (await rows(db)).items() if c != "contact-001"} == {"sent"}


async def test_our_relay_down_is_retried_for_a_bounded_time_then_failed(
        db: Database, settings: Settings) -> None:
    """An unreachable SMTP relay (OSError under aiosmtplib) is no longer retried forever: the
    notice waits its due times until ``outage_window``, then fails with the reason."""
    await load_registry(db, registry([contact(1)]))
    s = settings.model_copy(update={"smtp_port": free_port()})  # nothing listens there
    n = notifier(db, s, retry=RetryPolicy(base_delay=0.01, max_delay=0.05,
                                           outage_window=timedelta(hours=1)))
    assert await n.handle_alert(alert(), playbook()) == 0  # no exception: nothing holds a partition
    (row,) = (await rows(db)).values()
    assert (row.state, row.refusals) == ("queued", 0) and "unavailable" in (row.error or "")
    n.retry = RetryPolicy(outage_window=timedelta(0))  # the window has passed
    assert await settle(n) == 0
    (row,) = (await rows(db)).values()
    assert row.state == "failed" and row.attempts == 2
    assert "unavailable" in (row.error or "") and "still unavailable after" in (row.error or "")


async def test_two_attempts_at_once_send_a_notice_once(db: Database, settings: Settings) -> None:
    """A handler, the scanner and a replica may all find one notice due: the claim (queued and
    due -> sending, compare-and-set) lets exactly one of them send it."""
    await load_registry(db, registry([contact(1)]))
    with ScriptedSmtp() as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        other = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        async with db.transaction() as session:
            await n._plan(session, alert(), playbook())
        (notice_id,) = await n.due()
        results = await asyncio.gather(n.deliver(notice_id), other.deliver(notice_id),
                                       n.deliver(notice_id))
    assert sorted(results) == [0, 0, 1]
    assert smtp.message_ids() == [f"<{notice_id}@example.org>"]
    (row,) = (await rows(db)).values()
    assert (row.state, row.attempts) == ("sent", 1)


async def test_an_interrupted_send_is_taken_up_once_its_claim_lapses(
        db: Database, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    await load_registry(db, registry([contact(1)]))
    with ScriptedSmtp() as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        async with db.transaction() as session:
            await n._plan(session, alert(), playbook())
            # A process claimed it and died mid-send: the claim's lease runs 60 s.
            await session.execute(update(NoticeRow).values(
                state="sending", attempts=1, next_attempt_at=utcnow() + timedelta(seconds=60)))
        assert await n.due() == []
        assert await n.deliver_pending(alert().alert_id) == 0  # a redelivered event waits too
        later = utcnow() + timedelta(seconds=61)
        with caplog.at_level(logging.INFO, "prevent.notifier.centre"):
            assert await n.deliver_many(await n.due(later), later) == 1
    (row,) = (await rows(db)).values()
    assert (row.state, row.attempts) == ("sent", 2)
    assert smtp.message_ids() == [f"<{row.notice_id}@example.org>"]
    assert "resending notice" in caplog.text


async def test_an_email_is_in_flight_until_its_outcome_is_recorded(
        db: Database, settings: Settings) -> None:
    """The channel's slot (one email at a time) is held until the send's outcome is recorded:
    with a slow database, the next email waits instead of going out while the previous one is
    accepted but unrecorded. A process killed then leaves at most one accepted message to be
    sent again after its restart (test_crash once saw two)."""
    await load_registry(db, registry([contact(i) for i in range(1, 4)]))
    with ScriptedSmtp() as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        async with db.transaction() as session:
            await n._plan(session, alert(), playbook())
        finish = n._finish
        recorded = 0
        unrecorded: list[int] = []  # accepted by the server, not yet recorded, at each record

        async def slow_finish(*args: object, **kwargs: object) -> None:
            nonlocal recorded
            await asyncio.sleep(0.2)  # SQLite's write lock held by a rules batch, say
            unrecorded.append(len(smtp.received) - recorded)
            await finish(*args, **kwargs)  # type: ignore[arg-type]
            recorded += 1

        n._finish = slow_finish  # type: ignore[method-assign]
        assert await n.deliver_many(await n.due()) == 3
    assert unrecorded == [1, 1, 1]
    assert {r.state for r in (await rows(db)).values()} == {"sent"}


async def test_the_scanner_loop_sends_a_retry_when_it_falls_due(db: Database, settings: Settings) -> None:
    """The scan interval is a minute; a retry due in well under a second is still sent at its
    time, because the scheduled retry wakes the loop and it sleeps only until the due time."""
    await load_registry(db, registry([contact(1)]))
    with ScriptedSmtp(["451 busy"]) as smtp:
        s = settings.model_copy(update={"smtp_port": smtp.port, "scanner_interval_seconds": 60.0})
        n = notifier(db, s, retry=RetryPolicy(base_delay=0.2, max_delay=0.4))
        scanner = Scanner(s, db, n, PlaybookHolder())
        scanner.start()
        try:
            await asyncio.sleep(0.2)  # the first scan ran: the loop now sleeps for its interval
            await n.handle_alert(alert(), playbook(), wait=False)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while len(smtp.received) < 1:
                assert loop.time() < deadline, "the scheduled retry was not picked up"
                await asyncio.sleep(0.05)
        finally:
            await scanner.stop()
    (row,) = (await rows(db)).values()
    assert (row.state, row.attempts, row.refusals, smtp.attempts) == ("sent", 2, 1, 2)


@pytest.mark.parametrize(("result", "exc", "outcome"), [
    (SendResult.sent("ref"), None, Outcome.SENT),
    (SendResult.retry("SMTP 451: busy"), None, Outcome.REFUSED_FOR_NOW),
    (SendResult.fail("SMTP 550: no such user"), None, Outcome.FINAL),
    (None, TransientError("SMTP server 127.0.0.1:25 unavailable: ConnectionRefusedError"),
     Outcome.DEPENDENCY_DOWN),
    (None, ConnectionResetError(104, "reset"), Outcome.DEPENDENCY_DOWN),
    (None, OperationalError("select 1", {}, Exception("database is locked")), Outcome.DEPENDENCY_DOWN),
    (None, httpx.InvalidURL("Invalid IPv4 address: '0177.0.0.1'"), Outcome.FINAL),
    (None, ValueError("Header values may not contain linefeed or carriage return characters"),
     Outcome.FINAL),
    (None, BlockedAddress("127.0.0.1 is not public"), Outcome.FINAL),
    (None, PermissionError(13, "denied"), Outcome.FINAL),  # an OSError that is not an outage
    (None, RuntimeError("a bug"), Outcome.FINAL),
])
def test_every_outcome_is_classified_explicitly(result: SendResult | None, exc: Exception | None,
                                                outcome: Outcome) -> None:
    got, reason = classify(result, exc)
    assert got is outcome
    assert (reason is None) == (outcome is Outcome.SENT)
    if exc is not None:
        assert (reason and type(exc).__name__ in reason) or isinstance(exc, TransientError)
