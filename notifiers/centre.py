"""The centre notifier: on a confirmed alert, one notice per recipient and channel, sent once.

The notice row is written before sending (queued), moves to sending, then sent or
failed; its id is deterministic (alert, kind, contact, channel) and unique, so a
redelivered alert event or a restart plans nothing new and resumes what was in
flight. A resend after a crash mid-send carries the same Message-ID / idempotency key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from notifiers.channels.base import Channel, OutgoingNotice, SendResult
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
from prevent.messaging import backoff_delay
from prevent.playbooks.schema import Playbook
from prevent.storage import outbox
from prevent.storage.db import Database
from prevent.storage.tables import Contact, NoticeRow, Site

log = logging.getLogger("prevent.notifier.centre")
DONE = {NoticeState.SENT.value, NoticeState.DELIVERED.value, NoticeState.ACKNOWLEDGED.value}
SEVERITY_LABELS = {0: "none", 1: "minor", 2: "serious", 3: "grave", 4: "critical"}


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0


class CentreNotifier:
    def __init__(self, db: Database, renderer: NoticeRenderer, channels: Mapping[str, Channel],
                 links: AckLinks, retry: RetryPolicy = RetryPolicy()) -> None:
        self.db = db
        self.renderer = renderer
        self.channels = channels
        self.links = links
        self.retry = retry

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
            select(NoticeRow).where(NoticeRow.alert_id == alert.alert_id))).scalars())
        initial = [n for n in existing if n.kind == NoticeKind.INITIAL.value]
        if alert.status is AlertStatus.CLOSED:
            await self._follow_up(session, alert, playbook, initial, NoticeKind.ALL_CLEAR)
        elif not initial:
            plan = await resolve_audience(session, alert, playbook)
            for recipient in plan.recipients:
                await self._insert(session, alert, playbook, recipient, NoticeKind.INITIAL)
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
                await self._insert(session, alert, playbook, recipient, kind)

    async def _insert(self, session: AsyncSession, alert: Alert, playbook: Playbook,
                      recipient: Recipient, kind: NoticeKind) -> None:
        notice_id = notice_id_for(alert.alert_id, kind, alert.revision, recipient.contact_id,
                                  recipient.channel)
        contact = await session.get(Contact, recipient.contact_id)
        site_name = recipient.site_name or (contact and await _site_name(session, contact.site_id))
        rendered = self.renderer.render(recipient.template, recipient.language, {
            "alert": alert, "playbook": playbook, "kind": kind.value, "site_name": site_name or "",
            "contact_name": contact.name if contact else "", "exercise": alert.exercise,
            "severity_label": SEVERITY_LABELS.get(alert.severity, str(alert.severity)),
            "ack_url": self.links.url(notice_id),
        })
        subject = f"[EXERCISE] {rendered.subject}" if alert.exercise else rendered.subject
        now = utcnow()
        insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
        await session.execute(insert(NoticeRow).values(
            notice_id=notice_id, alert_id=alert.alert_id, alert_revision=alert.revision,
            kind=kind.value, site_id=recipient.site_id, contact_id=recipient.contact_id,
            channel=recipient.channel, language=rendered.language, state=NoticeState.QUEUED.value,
            attempts=0, subject=subject, body=rendered.text, exercise=alert.exercise,
            created_at=now, updated_at=now,
        ).on_conflict_do_nothing(index_elements=["notice_id"]))

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
            sent += await self._deliver(notice_id)
        return sent

    async def _deliver(self, notice_id: str) -> int:
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
                result = await channel.send(outgoing)  # TransientError propagates: server down
            if result.ok:
                await self._finish(notice_id, NoticeState.SENT, None)
                return 1
            if result.retryable and attempts < self.retry.max_attempts:
                delay = backoff_delay(attempts, self.retry.base_delay, self.retry.max_delay)
                log.warning("notice %s attempt %d failed (%s); retrying in %.1fs",
                            notice_id, attempts, result.error, delay)
                await asyncio.sleep(delay)
                continue
            await self._finish(notice_id, NoticeState.FAILED, result.error)
            return 0

    async def _outgoing(self, session: AsyncSession, row: NoticeRow) -> OutgoingNotice | None:
        contact = await session.get(Contact, row.contact_id)
        if contact is None:
            return None
        address = {"email": contact.email, "sms": contact.phone,
                   "webhook": contact.webhook_url}.get(row.channel)
        if not address:
            return None
        return OutgoingNotice(
            notice_id=row.notice_id, address=address, subject=row.subject, text=row.body,
            html=text_to_html(row.body, row.language), language=row.language, exercise=row.exercise,
            payload={"channel": row.channel, "notice_id": row.notice_id, "alert_id": row.alert_id,
                     "kind": row.kind, "subject": row.subject, "body": row.body,
                     "exercise": row.exercise, "ack_url": self.links.url(row.notice_id)},
        )

    async def _finish(self, notice_id: str, state: NoticeState, error: str | None) -> None:
        now = utcnow()
        async with self.db.transaction() as session:
            row = await session.get(NoticeRow, notice_id)
            assert row is not None
            await session.execute(update(NoticeRow).where(NoticeRow.notice_id == notice_id).values(
                state=state.value, error=error, updated_at=now,
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


def notice_event(row: NoticeRow, state: NoticeState, error: str | None, at: object) -> Notice:
    return Notice(notice_id=row.notice_id, alert_id=row.alert_id, alert_revision=row.alert_revision,
                  site_id=row.site_id, contact_id=row.contact_id, channel=row.channel,
                  kind=NoticeKind(row.kind), state=state, language=row.language,
                  exercise=row.exercise, error=error, at=at)


def _template_for(playbook: Playbook, channel: str) -> str:
    return next((a.template for a in playbook.response.notify if channel in a.channels), "default")


async def _site_name(session: AsyncSession, site_id: str) -> str:
    site = await session.get(Site, site_id)
    return site.name if site else ""
