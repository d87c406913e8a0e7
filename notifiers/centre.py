"""The centre notifier: on a confirmed alert, one notice per recipient and channel, sent once.

The notice row is written before sending (queued), moves to sending, then sent or
failed; its id is deterministic (alert, kind, contact, channel) and unique, so a
redelivered alert event or a restart plans nothing new and resumes what was in
flight. A resend after a crash mid-send carries the same Message-ID / idempotency key
and the same acknowledgement link (the link's timestamp is the notice's creation).

One pipeline serves every channel (as Alertmanager's notify pipeline does): the
per-channel token bucket, the send, retry with jittered backoff for retryable
results, and the record (state, error, ``prevent.notices.v1`` event, dead letter).
Messages to the engagement officer (acknowledgement follow-ups, stand-down reviews)
are notices too, so they get the same guarantees.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from notifiers.cap import CapNotice, cap_document
from notifiers.channels.base import Channel, OutgoingNotice, SendResult
from notifiers.ratelimit import TokenBucket
from notifiers.templates import NoticeRenderer, text_to_html
from prevent.acklinks import AckLinks
from prevent.audience import Recipient, resolve_audience
from prevent.contracts import (
    DEADLETTER,
    NOTICES,
    Alert,
    AlertStatus,
    Notice,
    NoticeKind,
    NoticeState,
    notice_id_for,
    utcnow,
)
from prevent.messaging import backoff_delay, retry_transient
from prevent.playbooks.schema import Playbook
from prevent.storage import outbox
from prevent.storage.db import Database
from prevent.storage.tables import Contact, NoticeRow, Site

log = logging.getLogger("prevent.notifier.centre")
DONE = {NoticeState.SENT.value, NoticeState.DELIVERED.value, NoticeState.ACKNOWLEDGED.value}
SEVERITY_LABELS = {0: "none", 1: "minor", 2: "serious", 3: "grave", 4: "critical"}
OFFICER = "engagement-officer"  # contact id of messages to the engagement officer
INSTRUCTION = {
    "en": "Stay alert, report anything suspicious to the police, call 911 in an emergency.",
    "fr": "Restez vigilants, signalez tout fait suspect à la police, composez le 911 en cas d'urgence.",
}


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0


def ack_code_for(notice_id: str) -> str:
    """Six digits an SMS recipient can type back; matched together with their number."""
    return f"{int(hashlib.sha256(notice_id.encode()).hexdigest(), 16) % 1_000_000:06d}"


class CentreNotifier:
    def __init__(self, db: Database, renderer: NoticeRenderer, channels: Mapping[str, Channel],
                 links: AckLinks, retry: RetryPolicy = RetryPolicy(), *,
                 limits: Mapping[str, TokenBucket] | None = None, cap_sender: str = "prevent@example.org",
                 officer_email: str | None = None) -> None:
        self.db = db
        self.renderer = renderer
        self.channels = channels
        self.links = links
        self.retry = retry
        self.limits = dict(limits or {})
        self.cap_sender = cap_sender
        self.officer_email = officer_email

    async def handle_alert(self, alert: Alert, playbook: Playbook) -> int:
        """Plan and send the notices this alert state calls for; returns how many were sent."""
        if alert.status not in (AlertStatus.CONFIRMED, AlertStatus.CLOSED):
            return 0
        async with self.db.transaction() as session:
            await self._plan(session, alert, playbook)
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
        ack_url = self.links.url(notice_id, issued_at=now)
        contact = await session.get(Contact, recipient.contact_id)
        site = await session.get(Site, recipient.site_id)
        site_name = recipient.site_name or (site.name if site else "")
        rendered = self.renderer.render(recipient.template, recipient.language, {
            "alert": alert, "playbook": playbook, "kind": kind.value, "site_name": site_name,
            "contact_name": contact.name if contact else "", "exercise": alert.exercise,
            "severity_label": SEVERITY_LABELS.get(alert.severity, str(alert.severity)),
            "ack_url": ack_url,
        })
        subject = f"[EXERCISE] {rendered.subject}" if alert.exercise else rendered.subject
        cap_xml = cap_document(CapNotice(
            identifier=notice_id, sender=self.cap_sender, sent=now, kind=kind,
            exercise=alert.exercise, language=rendered.language,
            event=alert.incident_type.replace("_", " "), severity=alert.severity,
            headline=subject, description=_without(rendered.text, ack_url),
            instruction=INSTRUCTION.get(rendered.language, INSTRUCTION["en"]),
            area_desc=f"{site_name}, {site.municipality}" if site else site_name,
            lat=site.lat if site else None, lon=site.lon if site else None,
            references=(self.cap_sender, first.notice_id, first.created_at) if first else None))
        await _insert_notice(session, dict(
            notice_id=notice_id, alert_id=alert.alert_id, alert_revision=alert.revision,
            kind=kind.value, site_id=recipient.site_id, contact_id=recipient.contact_id,
            channel=recipient.channel, language=rendered.language, subject=subject,
            body=rendered.text, exercise=alert.exercise, ack_code=ack_code_for(notice_id),
            cap_xml=cap_xml), now)

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
            subject=prefix + subject, body=body, exercise=alert.exercise), utcnow())

    # ------------------------------------------------------------------ delivery

    async def deliver_pending(self, alert_id: str) -> int:
        async with self.db.transaction() as session:
            pending = list((await session.execute(
                select(NoticeRow.notice_id).where(
                    NoticeRow.alert_id == alert_id,
                    NoticeRow.state.in_([NoticeState.QUEUED.value, NoticeState.SENDING.value]))
                .order_by(NoticeRow.created_at, NoticeRow.notice_id))).scalars())
        sent = 0
        for notice_id in pending:
            sent += await self.deliver(notice_id)
        return sent

    async def deliver(self, notice_id: str) -> int:
        """Send one notice to completion (sent or failed); returns 1 if it was sent now.

        ``attempts`` on the row counts every try (the log of resends); the retry limit counts
        only the server's refusals in this run, so a long outage of the server (which raises
        TransientError and holds the Kafka handler) never uses a notice's retries up."""
        refusals = 0
        while True:
            async with self.db.transaction() as session:
                row = await session.get(NoticeRow, notice_id)
                if row is None or row.state in DONE or row.state == NoticeState.FAILED.value:
                    return 0
                if row.state == NoticeState.SENDING.value:
                    log.info("resending notice %s after an interrupted send", notice_id)
                row.state = NoticeState.SENDING.value
                row.attempts += 1
                row.updated_at = utcnow()
                outgoing = await self._outgoing(session, row)
                attempts = row.attempts
            channel = self.channels.get(outgoing.payload["channel"]) if outgoing else None
            if outgoing is None or channel is None:
                result = SendResult.fail("contact removed or channel not configured")
            else:
                bucket = self.limits.get(channel.name)
                if bucket is not None:
                    await bucket.acquire()
                result = await channel.send(outgoing)  # TransientError propagates: server down
            if result.ok:
                await self._record(notice_id, NoticeState.SENT, None, result.provider_ref)
                return 1
            refusals += 1
            if result.retryable and refusals < self.retry.max_attempts:
                delay = backoff_delay(refusals, self.retry.base_delay, self.retry.max_delay)
                log.warning("notice %s attempt %d failed (%s); retrying in %.1fs",
                            notice_id, attempts, result.error, delay)
                await asyncio.sleep(delay)
                continue
            await self._record(notice_id, NoticeState.FAILED, result.error)
            return 0

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
        only recording it is left. Raising instead would make the Kafka handler run again after
        the outage, and it would send the notice (still ``sending``) a second time."""
        await retry_transient(lambda: self._finish(notice_id, state, error, provider_ref),
                              f"recording notice {notice_id} {state.value}")

    async def _finish(self, notice_id: str, state: NoticeState, error: str | None,
                      provider_ref: str | None = None) -> None:
        now = utcnow()
        async with self.db.transaction() as session:
            row = await session.get(NoticeRow, notice_id)
            assert row is not None
            if row.state == NoticeState.ACKNOWLEDGED.value:
                return  # acknowledged while we were sending (a quick SMS reply): keep that
            await session.execute(update(NoticeRow).where(NoticeRow.notice_id == notice_id).values(
                state=state.value, error=error, updated_at=now,
                provider_ref=provider_ref or row.provider_ref,
                sent_at=now if state is NoticeState.SENT else row.sent_at))
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


async def _insert_notice(session: AsyncSession, values: dict[str, object], now: datetime) -> bool:
    """Insert a queued notice unless its id exists; True if this call inserted it."""
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    result = await session.execute(insert(NoticeRow).values(
        **values, state=NoticeState.QUEUED.value, attempts=0, created_at=now, updated_at=now,
    ).on_conflict_do_nothing(index_elements=["notice_id"]))
    return result.rowcount == 1  # type: ignore[attr-defined]


def notice_event(row: NoticeRow, state: NoticeState, error: str | None, at: object) -> Notice:
    return Notice(notice_id=row.notice_id, alert_id=row.alert_id, alert_revision=row.alert_revision,
                  site_id=row.site_id, contact_id=row.contact_id, channel=row.channel,
                  kind=NoticeKind(row.kind), state=state, language=row.language,
                  exercise=row.exercise, error=error, at=at)


def _template_for(playbook: Playbook, channel: str) -> str:
    return next((a.template for a in playbook.response.notify if channel in a.channels), "default")


def _without(text: str, ack_url: str) -> str:
    """The notice text minus the line carrying the acknowledgement link (a capability)."""
    return "\n".join(line for line in text.splitlines() if ack_url not in line).strip()
