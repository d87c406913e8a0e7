"""What a partner contact can do with a notice: acknowledge it, change their preferences
or opt out, report a concern at their site. The web pages (prevent/web/ack.py) and
the SMS gateway's inbound webhook (prevent/web/sms_replies.py) call these.

Every function works in the caller's transaction and stages its events through the
outbox, so the state change and its event are committed together. Contact details
(addresses, numbers) never go into events, audit entries or logs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.contracts import (
    INCIDENTS,
    NOTICES,
    FeedKind,
    GlobalIncident,
    Location,
    NoticeState,
    stable_id,
    utcnow,
)
from prevent.notices.events import notice_event
from prevent.notices.sms_text import normalize_phone
from prevent.platform.storage import outbox
from prevent.platform.storage.tables import Contact, NoticeRow, Site

CHANNELS = ("email", "sms", "webhook")
LANGUAGES = ("en", "fr")
MAX_REPORT_CHARS = 2000
ACK_REPLY = re.compile(r"^\s*(?:ACK|OK|YES|OUI)\b[\s:#-]*(\d{6})?\s*$", re.IGNORECASE)


class InvalidInput(ValueError):
    """Input from a contact that cannot be accepted; the message is shown to them."""


@dataclass(frozen=True)
class AckOutcome:
    notice: NoticeRow
    newly: bool  # False: it had been acknowledged before (a replay), nothing recorded


async def acknowledge(session: AsyncSession, notice_id: str, *, via: str) -> AckOutcome:
    """Record the acknowledgement once; a second call changes nothing and publishes nothing."""
    now = utcnow()
    # A conditional UPDATE is the idempotency check: two concurrent clicks, one winner.
    result = await session.execute(
        update(NoticeRow).where(NoticeRow.notice_id == notice_id, NoticeRow.acknowledged_at.is_(None))
        .values(state=NoticeState.ACKNOWLEDGED.value, acknowledged_at=now, acknowledged_via=via,
                updated_at=now))
    row = await session.get(NoticeRow, notice_id, populate_existing=True)
    if row is None:
        raise LookupError(notice_id)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return AckOutcome(row, newly=False)
    await outbox.stage(session, NOTICES, notice_event(row, NoticeState.ACKNOWLEDGED, None, now),
                       key=notice_id, event_id=f"{notice_id}:acknowledged",
                       subtype=NoticeState.ACKNOWLEDGED.value)
    await audit.record(session, actor=f"contact:{row.contact_id}", action="notice.acknowledge",
                       subject=row.alert_id, after={"notice_id": notice_id, "via": via},
                       key=f"ack:{notice_id}")
    return AckOutcome(row, newly=True)


async def update_preferences(session: AsyncSession, notice: NoticeRow, *, language: str,
                             channels: list[str], opt_out: bool) -> Contact:
    """Change the contact's language and channels, or opt them out (consent withdrawn)."""
    contact = await session.get(Contact, notice.contact_id)
    if contact is None:
        raise InvalidInput("This contact is no longer in the registry.")
    if language not in LANGUAGES:
        raise InvalidInput("Choose English or French.")
    unknown = set(channels) - set(CHANNELS)
    if unknown:
        raise InvalidInput(f"Unknown channel: {', '.join(sorted(unknown))}.")
    reachable = {"email": contact.email, "sms": contact.phone, "webhook": contact.webhook_url}
    chosen = [c for c in CHANNELS if c in channels and reachable[c]]
    if not opt_out and not chosen:
        raise InvalidInput("Choose at least one way to reach you, or opt out.")
    before = {"language": contact.language, "channels": list(contact.channels),
              "consent": contact.consent}
    contact.language = language
    if chosen:
        contact.channels = chosen
    contact.consent = contact.consent and not opt_out
    after = {"language": contact.language, "channels": list(contact.channels),
             "consent": contact.consent}
    if after != before:
        contact.own_choice_at = utcnow()
        await audit.record(session, actor=f"contact:{contact.contact_id}",
                           action="contact.opt_out" if opt_out else "contact.preferences",
                           subject=contact.contact_id, before=before, after=after,
                           reason=f"via notice {notice.notice_id}")
    return contact


async def report_concern(session: AsyncSession, notice: NoticeRow, *, text: str,
                         urgent: bool) -> GlobalIncident:
    """A partner's report of a concern at their own site, as a ``partner_report`` incident
    on ``prevent.incidents.v1``: it goes through the rules to the duty inspector's queue."""
    text = text.strip()
    if not text:
        raise InvalidInput("Please describe your concern.")
    if len(text) > MAX_REPORT_CHARS:
        raise InvalidInput(f"Please keep the report under {MAX_REPORT_CHARS} characters.")
    site = await session.get(Site, notice.site_id)
    if site is None:
        raise InvalidInput("This site is no longer in the registry.")
    digest = hashlib.sha256(f"{urgent}\x1f{text}".encode()).hexdigest()
    now = utcnow()
    incident = GlobalIncident(
        incident_id=stable_id("inc", "partner", notice.notice_id, digest), feed_id=f"partner:{site.site_id}",
        kind=FeedKind.PARTNER_REPORT,
        title=f"{'URGENT: ' if urgent else ''}Partner report from {site.name}",
        summary=text, published=now, first_seen=now, language=notice.language,
        location=Location(place=site.municipality, lat=site.lat, lon=site.lon),
        categories=("partner_report", *(("urgent",) if urgent else ()), *site.communities),
        content_hash=digest[:32], exercise=notice.exercise,
    )
    await outbox.stage(session, INCIDENTS, incident, key=incident.incident_id,
                       event_id=f"{incident.incident_id}:{incident.content_hash}")
    await audit.record(session, actor=f"contact:{notice.contact_id}", action="partner.report",
                       subject=site.site_id, after={"incident_id": incident.incident_id,
                                                    "urgent": urgent, "notice_id": notice.notice_id},
                       key=f"report:{incident.incident_id}")
    return incident


# What an SMS gateway's delivery receipt means for a sent notice; other statuses (queued,
# accepted, sent, sending) are progress reports that change nothing.
RECEIPTS = {"delivered": NoticeState.DELIVERED, "failed": NoticeState.FAILED,
            "undelivered": NoticeState.FAILED}


async def delivery_receipt(session: AsyncSession, provider_ref: str, status: str,
                           detail: str = "") -> NoticeRow | None:
    """Record the gateway's receipt for the SMS notice it accepted as ``provider_ref``: the
    notice was delivered to the phone, or could not be (then the notices page shows it failed,
    with the gateway's reason). Only a notice still ``sent``
    changes, once: a repeated receipt, or one arriving after the acknowledgement, does nothing.
    Returns the notice changed, if any."""
    state = RECEIPTS.get(status.strip().lower())
    if state is None or not provider_ref:
        return None
    notice_id = (await session.execute(select(NoticeRow.notice_id).where(
        NoticeRow.provider_ref == provider_ref[:200], NoticeRow.channel == "sms"))).scalars().first()
    if notice_id is None:
        return None
    now = utcnow()
    error = None if state is NoticeState.DELIVERED else (
        f"the SMS gateway reported {status.strip().lower()}" + (f" ({detail[:200]})" if detail else ""))
    result = await session.execute(
        update(NoticeRow).where(NoticeRow.notice_id == notice_id, NoticeRow.state == NoticeState.SENT.value)
        .values(state=state.value, error=error, updated_at=now))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    row = await session.get(NoticeRow, notice_id, populate_existing=True)
    assert row is not None  # noqa: S101 - narrows the type: the update matched it
    await outbox.stage(session, NOTICES, notice_event(row, state, error, now), key=notice_id,
                       event_id=f"{notice_id}:{state.value}", subtype=state.value)
    return row


async def notice_for_sms_reply(session: AsyncSession, phone: str, text: str) -> NoticeRow | None:
    """The SMS notice a reply acknowledges: "ACK 123456" names it by its code; a bare "ACK"
    means the latest open SMS notice to that number. None if the reply is not an ACK."""
    match = ACK_REPLY.match(text or "")
    number = normalize_phone(phone or "")
    if not match or not number.strip("+"):
        return None
    contacts = (await session.execute(select(Contact.contact_id, Contact.phone)
                                      .where(Contact.phone.is_not(None)))).all()
    ids = [cid for cid, p in contacts if p is not None and normalize_phone(p) == number]
    if not ids:
        return None
    query = select(NoticeRow).where(NoticeRow.contact_id.in_(ids), NoticeRow.channel == "sms")
    if match.group(1):
        query = query.where(NoticeRow.ack_code == match.group(1))
    else:
        query = query.where(NoticeRow.state.in_([NoticeState.SENT.value, NoticeState.DELIVERED.value]))
    return (await session.execute(query.order_by(NoticeRow.created_at.desc()).limit(1))).scalars().first()
