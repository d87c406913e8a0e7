"""The centre notifier: on a confirmed alert, one notice per recipient and channel, sent once.

The notice row is written before sending (queued), moves to sending, then sent or
failed; its id is deterministic (alert, kind, contact, channel) and unique, so a
redelivered alert event or a restart plans nothing new and resumes what was in
flight. A resend after a crash mid-send carries the same Message-ID / idempotency key
and the same acknowledgement link (the link's timestamp is the notice's creation).

Each notice is rendered, sent and recorded on its own: whatever one contact, channel or
template raises fails that notice, with a readable reason on its row (the console's
notices page shows it), and never another notice. An alert's notices go out concurrently,
within the bounds of :mod:`notifiers.ratelimit` (a rate per channel, sends in flight per
channel and per receiving host).

What happens after a send (``Outcome``), explicitly and bounded:

* sent -> ``sent``;
* refused for now by the receiving side (SMTP 4xx, HTTP 408/409/425/429/5xx, a webhook
  timing out or unreachable) -> retried at a due time with jittered exponential backoff,
  until ``RetryPolicy.max_attempts`` such refusals, then ``failed``;
* our own dependency down (``TransientError``: the SMTP relay or the SMS gateway
  unreachable; the database failing while the message is read) -> retried at a due time,
  not counted as a refusal, until the notice has waited ``RetryPolicy.outage_window``
  (default 1 h), then ``failed``;
* anything else (refused outright: SMTP 5xx, other 4xx, a refused or malformed address, a
  message that cannot be built, a template that cannot be rendered, an unexpected error)
  -> ``failed`` at once.

A retry is a due time on the row (``next_attempt_at``), picked up by the scanner
(:mod:`notifiers.scanner`): nothing sleeps in a Kafka handler, so a dead endpoint never
holds a partition. Sends are claimed by a compare-and-set (``queued`` and due ->
``sending`` with a lease), so a handler, the scanner and a second replica never send one
notice at once; a claim whose lease lapsed (the process died mid-send) is taken up again.

Messages to the engagement officer (acknowledgement follow-ups, stand-down reviews)
are notices too, so they get the same guarantees.
"""

from __future__ import annotations

import asyncio
import email.errors
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from urllib.parse import urlsplit

import httpx
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from notifiers.cap_notices import CapNotice, cap_document
from notifiers.ratelimit import DeliveryLimits
from prevent.alerts.audience import Recipient, resolve_audience
from prevent.contracts import (
    DEADLETTER,
    NOTICES,
    Alert,
    AlertStatus,
    NoticeKind,
    NoticeState,
    notice_id_for,
    utcnow,
)
from prevent.notices.channel import Channel, OutgoingNotice, SendResult
from prevent.notices.events import notice_event
from prevent.notices.templates import NoticeRenderer, one_line, text_to_html
from prevent.notices.wording import SEVERITY_LABELS, ack_code_for
from prevent.partners.acklinks import AckLinks
from prevent.partners.site_diasporas import places_in_force, served_names
from prevent.platform.messaging import TransientError, retry_transient
from prevent.platform.netguard import BlockedAddress
from prevent.platform.retrying import backoff
from prevent.platform.storage import outbox
from prevent.platform.storage.db import Database
from prevent.platform.storage.dialect import insert_if_absent
from prevent.platform.storage.tables import Contact, NoticeRow, Site
from prevent.rules.playbooks.schema import Playbook

log = logging.getLogger("prevent.notifier.centre")
DONE = {NoticeState.SENT.value, NoticeState.DELIVERED.value, NoticeState.ACKNOWLEDGED.value}
OFFICER = "engagement-officer"  # contact id of messages to the engagement officer
INSTRUCTION = {
    "en": "Stay alert, report anything suspicious to the police, call 911 in an emergency.",
    "fr": "Restez vigilants, signalez tout fait suspect à la police, composez le 911 en cas d'urgence.",
}
MAX_ERROR = 500  # characters of a failure reason kept on the row
# Raised when a dependency of ours is down (the relay or gateway as the channels report it,
# the database while the message is read): worth retrying, within the outage window.
DEPENDENCY_DOWN: tuple[type[BaseException], ...] = (
    TransientError, ConnectionError, TimeoutError, OperationalError, InterfaceError)
# Raised while building or addressing one message: the message can never be sent as it is.
UNSENDABLE: tuple[type[BaseException], ...] = (
    ValueError, TypeError, LookupError, UnicodeError, email.errors.MessageError, BlockedAddress,
    httpx.InvalidURL, httpx.UnsupportedProtocol)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # retryable refusals by the receiving side, then failed
    base_delay: float = 0.5  # seconds; backoff is full-jitter exponential
    max_delay: float = 30.0
    outage_window: timedelta = timedelta(hours=1)  # our relay/gateway down this long: failed
    outage_max_delay: float = 60.0
    # A send claimed this long ago was interrupted (the process died): it is taken up again.
    # Longer than any one send can take (connect, TLS and the exchange, each within a timeout).
    lease: timedelta = timedelta(seconds=60)


@dataclass
class _Claim:
    attempts: int  # this one included
    refusals: int  # before this one
    created_at: datetime
    outgoing: OutgoingNotice | None = None
    error: BaseException | None = None  # building the message failed


class Outcome(Enum):
    SENT = "sent"
    REFUSED_FOR_NOW = "refused for now"  # retried, counted against max_attempts
    DEPENDENCY_DOWN = "dependency down"  # retried within outage_window
    FINAL = "final"  # failed at once


def classify(result: SendResult | None, exc: BaseException | None) -> tuple[Outcome, str | None]:
    """The one table of what a send's result or exception means (see the module docstring)."""
    if exc is not None:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, DEPENDENCY_DOWN):
            return Outcome.DEPENDENCY_DOWN, str(exc) if isinstance(exc, TransientError) else reason
        if isinstance(exc, UNSENDABLE):
            return Outcome.FINAL, f"the message could not be built or addressed: {reason}"
        return Outcome.FINAL, f"unexpected error: {reason}"
    assert result is not None  # noqa: S101 - narrows the type: no exception means a result
    if result.ok:
        return Outcome.SENT, None
    return (Outcome.REFUSED_FOR_NOW if result.retryable else Outcome.FINAL), result.error


def retry_delay(retry: int, base: float, cap: float) -> float:
    """Seconds until the retry numbered ``retry`` (0 first): the project's backoff
    (``prevent.platform.retrying``), exponential and capped, with "equal jitter" (half fixed, half
    random), so a scheduled retry is never due at once."""
    return backoff(retry, base=base, cap=cap, floor=0.5)




class CentreNotifier:
    def __init__(self, db: Database, renderer: NoticeRenderer, channels: Mapping[str, Channel],
                 links: AckLinks, retry: RetryPolicy = RetryPolicy(), *,
                 limits: DeliveryLimits | None = None, cap_sender: str = "prevent@example.org",
                 officer_email: str | None = None) -> None:
        self.db = db
        self.renderer = renderer
        self.channels = channels
        self.links = links
        self.retry = retry
        self.limits = limits or DeliveryLimits()
        self.cap_sender = cap_sender
        self.officer_email = officer_email
        # Called after a notice's outcome is recorded (its event is in the outbox): the
        # service sets the relay's kick. Called with the due time when a retry is scheduled:
        # the scanner sets its wake-up.
        self.on_recorded: Callable[[], None] = lambda: None
        self.on_scheduled: Callable[[datetime], None] = lambda _due: None
        self._in_flight: dict[str, asyncio.Task[int]] = {}
        self._closing = False

    async def handle_alert(self, alert: Alert, playbook: Playbook, *, wait: bool = True) -> int:
        """Plan the notices this alert state calls for and send them; returns how many were
        sent by this call. ``wait=False`` (the Kafka handler) returns once they are planned
        and hands the sends to background tasks: the partition never waits on a receiver."""
        if alert.status not in (AlertStatus.CONFIRMED, AlertStatus.CLOSED):
            return 0
        async with self.db.transaction() as session:
            await self._plan(session, alert, playbook)
        if not wait:
            self.dispatch(await self.pending(alert.alert_id))
            return 0
        return await self.deliver_pending(alert.alert_id)

    # ------------------------------------------------------------------ planning

    async def _plan(self, session: AsyncSession, alert: Alert, playbook: Playbook) -> None:
        existing = list((await session.execute(
            select(NoticeRow).where(NoticeRow.alert_id == alert.alert_id,
                                    NoticeRow.contact_id != OFFICER))).scalars())
        initial = [n for n in existing if n.kind == NoticeKind.INITIAL.value]
        if alert.status is AlertStatus.CLOSED:
            await self._follow_up(session, alert, playbook, initial, NoticeKind.ALL_CLEAR)
        elif not initial:
            plan = await resolve_audience(session, alert, playbook)
            for recipient in plan.recipients:
                await self._insert(session, alert, playbook, recipient, NoticeKind.INITIAL, None)
        elif alert.previous_severity is not None and alert.revision > max(
                n.alert_revision for n in existing):
            await self._follow_up(session, alert, playbook, initial, NoticeKind.UPDATE)

    async def _follow_up(self, session: AsyncSession, alert: Alert, playbook: Playbook,
                         initial: list[NoticeRow], kind: NoticeKind) -> None:
        """Updates and all-clears go to everyone who was actually notified."""
        for n in initial:
            if n.state in DONE:
                recipient = Recipient(n.site_id, "", n.contact_id, n.channel, n.language,
                                      _template_for(playbook, n.channel))
                await self._insert(session, alert, playbook, recipient, kind, n)

    async def _insert(self, session: AsyncSession, alert: Alert, playbook: Playbook,
                      recipient: Recipient, kind: NoticeKind, first: NoticeRow | None) -> None:
        notice_id = notice_id_for(alert.alert_id, kind, alert.revision, recipient.contact_id,
                                  recipient.channel)
        if await session.get(NoticeRow, notice_id) is not None:
            return  # planned before (a redelivered event): keep its text, link and CAP
        now = utcnow()
        contact = await session.get(Contact, recipient.contact_id)
        site = await session.get(Site, recipient.site_id)
        served = await _served(session, recipient)
        values: dict[str, object] = dict(
            notice_id=notice_id, alert_id=alert.alert_id, alert_revision=alert.revision,
            kind=kind.value, site_id=recipient.site_id, contact_id=recipient.contact_id,
            channel=recipient.channel, exercise=alert.exercise, ack_code=ack_code_for(notice_id))
        try:
            values |= self._compose(notice_id, now, alert, playbook, recipient, kind, first,
                                    contact, site, served)
        except Exception as exc:  # noqa: BLE001 - one recipient's template fails only its notice
            reason = f"the notice could not be rendered: {type(exc).__name__}: {exc}"
            log.error("notice %s: %s", notice_id, reason)
            subject = one_line(("[EXERCISE] " if alert.exercise else "") + alert.title)
            if await _insert_notice(session, values | dict(language=recipient.language or "en",
                                                           subject=subject, body=""), now):
                await session.execute(update(NoticeRow).where(NoticeRow.notice_id == notice_id)
                                      .values(state=NoticeState.FAILED.value, next_attempt_at=None,
                                              error=reason[:MAX_ERROR])
                                      .execution_options(synchronize_session=False))
                await _stage_outcome(session, notice_id, NoticeState.FAILED, reason[:MAX_ERROR], now)
            return
        await _insert_notice(session, values, now)

    def _compose(self, notice_id: str, now: datetime, alert: Alert, playbook: Playbook,
                 recipient: Recipient, kind: NoticeKind, first: NoticeRow | None,
                 contact: Contact | None, site: Site | None, served: str = "") -> dict[str, object]:
        """The notice's text and CAP document (no database access: what raises here is this
        notice's problem only). ``served``: the diasporas the site is told for, in words."""
        ack_url = self.links.url(notice_id, issued_at=now)
        site_name = recipient.site_name or (site.name if site else "")
        values = {
            "alert": alert, "playbook": playbook, "kind": kind.value, "site_name": site_name,
            "contact_name": contact.name if contact else "", "exercise": alert.exercise,
            "severity_label": SEVERITY_LABELS.get(alert.severity, str(alert.severity)),
            "ack_url": ack_url, "diaspora_served": served,
        }
        rendered = self.renderer.render(recipient.template, recipient.language, values)
        # The CAP document can be fetched by any role: it names no contact (L7).
        anonymous = self.renderer.render(recipient.template, recipient.language,
                                         values | {"contact_name": ""})
        subject = f"[EXERCISE] {rendered.subject}" if alert.exercise else rendered.subject
        cap_xml = cap_document(CapNotice(
            identifier=notice_id, sender=self.cap_sender, sent=now, kind=kind,
            exercise=alert.exercise, language=rendered.language,
            event=alert.incident_type.replace("_", " "), severity=alert.severity,
            headline=subject, description=_without(anonymous.text, ack_url),
            instruction=INSTRUCTION.get(rendered.language, INSTRUCTION["en"]),
            area_desc=f"{site_name}, {site.municipality}" if site else site_name,
            lat=site.lat if site else None, lon=site.lon if site else None,
            references=(self.cap_sender, first.notice_id, first.created_at) if first else None))
        return dict(language=rendered.language, subject=subject, body=rendered.text,
                    cap_xml=cap_xml)

    async def queue_officer_message(self, session: AsyncSession, *, notice_id: str, alert: Alert,
                                    kind: NoticeKind, site_id: str, subject: str, body: str) -> bool:
        """Queue one email to the engagement officer (in the caller's transaction); False if
        it was queued before (the id is deterministic) or no officer address is configured."""
        if not self.officer_email or await session.get(NoticeRow, notice_id) is not None:
            return False
        prefix = "[EXERCISE] " if alert.exercise else ""
        return await _insert_notice(session, dict(
            notice_id=notice_id, alert_id=alert.alert_id, alert_revision=alert.revision,
            kind=kind.value, site_id=site_id, contact_id=OFFICER, channel="email", language="en",
            subject=one_line(prefix + subject), body=body, exercise=alert.exercise), utcnow())

    # ------------------------------------------------------------------ finding what is due

    def _due(self, now: datetime) -> ColumnElement[bool]:
        """Queued and due, or claimed by a send whose lease lapsed (rows from before migration
        0007 have no due time: queued ones are due, sending ones after a lease since their
        last change)."""
        return or_(
            and_(NoticeRow.state == NoticeState.QUEUED.value,
                 or_(NoticeRow.next_attempt_at.is_(None), NoticeRow.next_attempt_at <= now)),
            and_(NoticeRow.state == NoticeState.SENDING.value,
                 or_(NoticeRow.next_attempt_at <= now,
                     and_(NoticeRow.next_attempt_at.is_(None),
                          NoticeRow.updated_at <= now - self.retry.lease))))

    async def pending(self, alert_id: str, now: datetime | None = None) -> list[str]:
        """The alert's notices due for an attempt, oldest first."""
        async with self.db.transaction() as session:
            return list((await session.execute(
                select(NoticeRow.notice_id).where(NoticeRow.alert_id == alert_id,
                                                  self._due(now or utcnow()))
                .order_by(NoticeRow.created_at, NoticeRow.notice_id))).scalars())

    async def due(self, now: datetime | None = None, limit: int = 2000) -> list[str]:
        """Every notice due for an attempt (scheduled retries, interrupted sends), oldest first."""
        async with self.db.transaction() as session:
            return list((await session.execute(
                select(NoticeRow.notice_id).where(self._due(now or utcnow()))
                .order_by(NoticeRow.next_attempt_at, NoticeRow.notice_id).limit(limit))).scalars())

    async def next_due(self) -> datetime | None:
        """When the earliest scheduled retry or send lease falls due (None: nothing waits)."""
        async with self.db.transaction() as session:
            return (await session.execute(select(func.min(NoticeRow.next_attempt_at)).where(
                NoticeRow.state.in_([NoticeState.QUEUED.value, NoticeState.SENDING.value])))).scalar()

    # ------------------------------------------------------------------ delivery

    async def deliver_pending(self, alert_id: str, now: datetime | None = None) -> int:
        return await self.deliver_many(await self.pending(alert_id, now), now)

    async def deliver_many(self, notice_ids: Iterable[str], now: datetime | None = None) -> int:
        """Send these notices concurrently (within the limits); returns how many were sent."""
        results = await asyncio.gather(*(self.deliver(i, now) for i in dict.fromkeys(notice_ids)))
        return sum(results)

    def dispatch(self, notice_ids: Iterable[str]) -> None:
        """Send these notices in background tasks (one per notice not already in flight here)."""
        if self._closing:
            return  # shutting down: they stay due, the next start (or a replica) sends them
        for notice_id in notice_ids:
            if notice_id not in self._in_flight:
                task = asyncio.create_task(self.deliver(notice_id), name=f"notice-{notice_id}")
                self._in_flight[notice_id] = task

                def forget(_task: asyncio.Task[int], i: str = notice_id) -> None:
                    self._in_flight.pop(i, None)

                task.add_done_callback(forget)

    async def aclose(self, grace: float = 5.0) -> None:
        """Stop dispatching; give sends under way ``grace`` seconds, then cancel them (a
        cancelled send keeps its claim, which lapses: it is taken up again after a restart)."""
        self._closing = True
        tasks = set(self._in_flight.values())
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def deliver(self, notice_id: str, now: datetime | None = None) -> int:
        """One attempt at one notice, if it is due: claim it, send it, record the outcome
        (sent, failed, or a retry scheduled). Returns 1 if it was sent now.

        Never raises for what one notice does (a database outage before the claim is logged:
        the notice stays due and the scanner comes back to it)."""
        try:
            return await self._deliver(notice_id, now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - isolation: never another notice's problem
            log.warning("notice %s: attempt not made, will retry at the next scan: %s",
                        notice_id, f"{type(exc).__name__}: {exc}")
            return 0

    async def _deliver(self, notice_id: str, now: datetime | None) -> int:
        async with self.db.transaction() as session:
            row = await session.get(NoticeRow, notice_id)
            if row is None or row.state in DONE or row.state == NoticeState.FAILED.value:
                return 0
            channel_name, host = row.channel, await self._host(session, row)
        channel = self.channels.get(channel_name)
        # The slot is held until the outcome is recorded, not just until the send returns: a
        # message the receiving side accepted is "in flight" until its row says so, because a
        # process that dies before recording it leaves the claim to lapse and the notice is
        # sent again after the restart. Released at the send's end, the next send could go out
        # while this record waits (on SQLite's write lock held by a rules batch, or a database
        # outage), and a SIGKILL could then find several accepted messages unrecorded, all sent
        # twice (test_crash[kafka] once saw two). Held, a killed process resends at most its
        # channel's bound (CHANNEL_IN_FLIGHT: one email).
        async with self.limits.slot(channel_name, host):
            claimed = await self._claim(notice_id, now)
            if claimed is None:
                return 0  # not due, or another task or replica has it
            result: SendResult | None = None
            error: BaseException | None = claimed.error
            if error is None:
                try:
                    if claimed.outgoing is None or channel is None:
                        result = SendResult.fail("contact removed, no address for the channel, "
                                                 "or channel not configured")
                    else:
                        result = await channel.send(claimed.outgoing)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - classified below, this notice only
                    error = exc
            outcome, reason = classify(result, error)
            if error is not None and outcome is Outcome.FINAL and not isinstance(error, UNSENDABLE):
                log.error("notice %s: unexpected error while sending", notice_id, exc_info=error)
            return await self._settle(notice_id, outcome, reason, claimed.attempts, claimed.refusals,
                                      claimed.created_at, result.provider_ref if result else None)

    async def _settle(self, notice_id: str, outcome: Outcome, reason: str | None, attempts: int,
                      refusals: int, created_at: datetime, provider_ref: str | None) -> int:
        reason = (reason or "")[:MAX_ERROR] or None
        if outcome is Outcome.SENT:
            await self._record(notice_id, NoticeState.SENT, None, provider_ref)
            return 1
        if outcome is Outcome.REFUSED_FOR_NOW:
            if refusals + 1 >= self.retry.max_attempts:
                await self._record(notice_id, NoticeState.FAILED,
                                   f"{reason} (gave up after {refusals + 1} refusals)")
                return 0
            delay = retry_delay(refusals, self.retry.base_delay, self.retry.max_delay)
            await self._reschedule(notice_id, reason, delay, refusal=True)
            return 0
        if outcome is Outcome.DEPENDENCY_DOWN:
            waited = utcnow() - created_at
            if waited >= self.retry.outage_window:
                await self._record(notice_id, NoticeState.FAILED,
                                   f"{reason} (still unavailable after {_duration(waited)})")
                return 0
            delay = retry_delay(attempts - 1, self.retry.base_delay, self.retry.outage_max_delay)
            await self._reschedule(notice_id, reason, delay, refusal=False)
            return 0
        await self._record(notice_id, NoticeState.FAILED, reason)
        return 0

    async def _host(self, session: AsyncSession, row: NoticeRow) -> str:
        """The receiving server a send goes to (host and port), for the per-host bound."""
        if row.channel == "webhook" and row.contact_id != OFFICER:
            contact = await session.get(Contact, row.contact_id)
            parts = urlsplit(contact.webhook_url or "") if contact else None
            return parts.netloc.rpartition("@")[2].lower() if parts else ""
        return row.channel  # email: our relay; SMS: our gateway

    async def _claim(self, notice_id: str, now: datetime | None) -> _Claim | None:
        """Compare-and-set: a due notice -> ``sending`` with a lease, and the message to send
        (read in the same transaction). None if not claimed."""
        at = now or utcnow()
        async with self.db.transaction() as session:
            row = await session.get(NoticeRow, notice_id)
            if row is None:
                return None
            resumed = row.state == NoticeState.SENDING.value
            result = await session.execute(
                update(NoticeRow).where(NoticeRow.notice_id == notice_id, self._due(at))
                .values(state=NoticeState.SENDING.value, attempts=NoticeRow.attempts + 1,
                        updated_at=utcnow(), next_attempt_at=utcnow() + self.retry.lease)
                .execution_options(synchronize_session=False))
            # An UPDATE's result is a CursorResult, typed by SQLAlchemy as the plain Result (no rowcount).
            claimed: int = result.rowcount  # type: ignore[attr-defined]
            if claimed != 1:
                return None
            if resumed:
                log.info("resending notice %s after an interrupted send", notice_id)
            claim = _Claim(row.attempts + 1, row.refusals or 0, row.created_at)
            try:
                claim.outgoing = await self._outgoing(session, row)
            except (OperationalError, InterfaceError):
                raise  # the database: the whole claim is rolled back, the notice stays due
            except Exception as exc:  # noqa: BLE001 - this notice's own problem, recorded
                claim.error = exc
            return claim

    async def _reschedule(self, notice_id: str, reason: str | None, delay: float, *,
                          refusal: bool) -> None:
        due = utcnow() + timedelta(seconds=delay)

        async def write() -> None:
            async with self.db.transaction() as session:
                await session.execute(update(NoticeRow).where(
                    NoticeRow.notice_id == notice_id, NoticeRow.state == NoticeState.SENDING.value)
                    .values(state=NoticeState.QUEUED.value, error=f"will retry: {reason}"[:MAX_ERROR],
                            next_attempt_at=due, updated_at=utcnow(),
                            refusals=NoticeRow.refusals + (1 if refusal else 0))
                    .execution_options(synchronize_session=False))

        log.warning("notice %s not sent (%s); next attempt in %.1fs", notice_id, reason, delay)
        await retry_transient(write, f"scheduling notice {notice_id}")
        self.on_scheduled(due)

    async def _outgoing(self, session: AsyncSession, row: NoticeRow) -> OutgoingNotice | None:
        if row.contact_id == OFFICER:
            address, webhook_format = self.officer_email, "json"
        else:
            contact = await session.get(Contact, row.contact_id)
            if contact is None:
                return None
            address = {"email": contact.email, "sms": contact.phone,
                       "webhook": contact.webhook_url}.get(row.channel)
            webhook_format = contact.webhook_format
        if not address:
            return None
        ack_url = self.links.url(row.notice_id, issued_at=row.created_at) if row.ack_code else ""
        return OutgoingNotice(
            notice_id=row.notice_id, address=address, subject=row.subject, text=row.body,
            html=text_to_html(row.body, row.language), language=row.language, exercise=row.exercise,
            payload={"channel": row.channel, "notice_id": row.notice_id, "alert_id": row.alert_id,
                     "alert_revision": row.alert_revision, "kind": row.kind, "site_id": row.site_id,
                     "language": row.language, "subject": row.subject, "body": row.body,
                     "exercise": row.exercise, "ack_url": ack_url,
                     "created_at": row.created_at.isoformat()},
            cap_xml=row.cap_xml, ack_url=ack_url, ack_code=row.ack_code or "",
            webhook_format=webhook_format,
        )

    async def _record(self, notice_id: str, state: NoticeState, error: str | None,
                      provider_ref: str | None = None) -> None:
        """``_finish``, waiting out a database outage in place: the send's outcome is known and
        only recording it is left. Giving up instead would leave the claim to lapse and the
        notice (still ``sending``) would be sent a second time."""
        await retry_transient(lambda: self._finish(notice_id, state, error, provider_ref),
                              f"recording notice {notice_id} {state.value}")
        self.on_recorded()

    async def _finish(self, notice_id: str, state: NoticeState, error: str | None,
                      provider_ref: str | None = None) -> None:
        now = utcnow()
        async with self.db.transaction() as session:
            row = await session.get(NoticeRow, notice_id)
            assert row is not None  # noqa: S101 - narrows the type: the notice exists
            if row.state == NoticeState.ACKNOWLEDGED.value:
                return  # acknowledged while we were sending (a quick SMS reply): keep that
            await session.execute(update(NoticeRow).where(NoticeRow.notice_id == notice_id).values(
                state=state.value, error=error, updated_at=now, next_attempt_at=None,
                provider_ref=provider_ref or row.provider_ref,
                sent_at=now if state is NoticeState.SENT else row.sent_at))
            await _stage_outcome(session, notice_id, state, error, now)


async def _stage_outcome(session: AsyncSession, notice_id: str, state: NoticeState,
                         error: str | None, now: datetime) -> None:
    """The notice's event (and, when it failed, its dead letter) in the caller's transaction."""
    row = await session.get(NoticeRow, notice_id)
    assert row is not None  # noqa: S101 - narrows the type: the notice exists
    event = notice_event(row, state, error, now)
    await outbox.stage(session, NOTICES, event, key=notice_id,
                       event_id=f"{notice_id}:{state.value}", subtype=state.value)
    if state is NoticeState.FAILED:
        log.error("notice %s failed: %s", notice_id, error)
        await outbox.stage(session, DEADLETTER, event, key=notice_id,
                           event_id=f"{notice_id}:deadletter", headers={
                               "x-origin-topic": "prevent.alerts.v1",
                               "x-origin-key": row.alert_id,
                               "x-error": (error or "")[:2000]})


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


async def _insert_notice(session: AsyncSession, values: dict[str, object], now: datetime) -> bool:
    """Insert a queued notice, due now, unless its id exists; True if this call inserted it."""
    return await insert_if_absent(session, NoticeRow, dict(
        **values, state=NoticeState.QUEUED.value, attempts=0, refusals=0, created_at=now,
        updated_at=now, next_attempt_at=now,
    ), ["notice_id"])




def _template_for(playbook: Playbook, channel: str) -> str:
    return next((a.template for a in playbook.response.notify if channel in a.channels), "default")


def _without(text: str, ack_url: str) -> str:
    """The notice text minus the line carrying the acknowledgement link (a capability)."""
    return "\n".join(line for line in text.splitlines() if ack_url not in line).strip()


async def _served(session: AsyncSession, recipient: Recipient) -> str:
    """The diasporas a site is told for (it is in the audience only for serving them), named
    in the contact's language: countries by CLDR's names, regions by the diaspora map's."""
    if not recipient.diasporas:
        return ""
    regions: dict[str, str] = {}
    if any(len(code) != 2 for code in recipient.diasporas):
        places = await places_in_force(session, None)
        regions = {c: places.name(c) for c in recipient.diasporas if c in places.regions}
    return served_names(recipient.diasporas, regions, recipient.language or "en")
