"""The acknowledgement link and page: valid, replayed, expired and tampered tokens; the
form nonce; preferences and opt-out; partner reports; SMS replies."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from notifiers.channels.http import SIGNATURE_HEADER, sign
from prevent.contracts import INCIDENTS, NOTICES, FeedKind, GlobalIncident, utcnow
from prevent.partners.acklinks import AckLinks
from prevent.partners.registry import apply_registry, renew_consent
from prevent.platform.config import Settings
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import AuditRow, Contact, NoticeRow, OutboxRow
from prevent.web.app import ConsoleState, create_app
from prevent.web.sms_replies import twilio_signature

from .helpers import ScriptedSmtp, alert, contact, load_registry, notifier, playbook, registry

INBOUND_SECRET = "inbound-test-secret"


@asynccontextmanager
async def console(db: Database, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(None)  # type: ignore[arg-type] - state set directly, no lifespan
    app.state.console = ConsoleState(db=db, settings=settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://console.test") as client:
        yield client


async def sent_notices(db: Database, settings: Settings, channels: tuple[str, ...] = ("email",)
                       ) -> list[NoticeRow]:
    await load_registry(db, registry([contact(1, channels=channels, language="fr")]))
    with ScriptedSmtp() as smtp:
        s = settings.model_copy(update={"smtp_port": smtp.port, "sms_gateway_url": None})
        n = notifier(db, s)
        n.channels = {"email": n.channels["email"], "sms": _AlwaysSent()}
        await n.handle_alert(alert(), playbook())
    async with db.transaction() as session:
        return list((await session.execute(select(NoticeRow).order_by(NoticeRow.channel))).scalars())


class _AlwaysSent:
    name = "sms"

    async def send(self, notice):
        from prevent.notices.channel import SendResult

        return SendResult.sent("gw-ref")


def nonce(page: str, form: str) -> str:
    match = re.search(rf'action="[^"]*{form}"[^>]*>\s*<input type="hidden" name="nonce" value="([^"]+)"',
                      page)
    assert match, f"no nonce for {form}"
    return match.group(1)


async def outbox(db: Database, topic: str) -> list[OutboxRow]:
    async with db.transaction() as session:
        return list((await session.execute(select(OutboxRow).where(OutboxRow.topic == topic)
                                            .order_by(OutboxRow.seq))).scalars())


async def test_valid_link_then_replay(db: Database, settings: Settings) -> None:
    (notice,) = await sent_notices(db, settings)
    token = AckLinks.from_settings(settings).token(notice.notice_id, notice.created_at)
    assert token in notice.body  # the link in the notice is the one the page accepts
    async with console(db, settings) as client:
        page = await client.get(f"/ack/{token}")
        assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
        assert notice.subject in page.text and 'lang="fr"' in page.text
        ack_nonce = nonce(page.text, f"/ack/{token}")
        first = await client.post(f"/ack/{token}", data={"nonce": ack_nonce})
        again = await client.post(f"/ack/{token}", data={"nonce": ack_nonce})
    assert first.status_code == again.status_code == 200
    assert "Merci" in first.text and "déjà été confirmé" in again.text
    assert first.headers["referrer-policy"] == "no-referrer"
    async with db.transaction() as session:
        row = await session.get(NoticeRow, notice.notice_id)
        audits = (await session.execute(select(AuditRow).where(
            AuditRow.action == "notice.acknowledge"))).scalars().all()
    assert row is not None and row.state == "acknowledged" and row.acknowledged_via == "link"
    acked = [e for e in await outbox(db, NOTICES.name) if e.subtype == "acknowledged"]
    assert len(acked) == 1 and len(audits) == 1  # recorded once


@pytest.mark.parametrize("case", ["expired", "tampered", "garbage"])
async def test_bad_links_get_a_clear_page_and_record_nothing(db: Database, settings: Settings,
                                                             case: str) -> None:
    (notice,) = await sent_notices(db, settings)
    links = AckLinks.from_settings(settings)
    good = links.token(notice.notice_id, notice.created_at)
    token = {"expired": links.token(notice.notice_id, utcnow() - timedelta(days=15)),
             "tampered": good[:-3] + ("aaa" if not good.endswith("aaa") else "bbb"),
             "garbage": "not-a-token"}[case]
    async with console(db, settings) as client:
        page = await client.get(f"/ack/{token}")
        post = await client.post(f"/ack/{token}", data={"nonce": "x"})
    expected = (410, "expired") if case == "expired" else (400, "not valid")
    for response in (page, post):
        assert response.status_code == expected[0] and expected[1] in response.text
        assert response.headers["referrer-policy"] == "no-referrer"
    async with db.transaction() as session:
        row = await session.get(NoticeRow, notice.notice_id)
    assert row is not None and row.acknowledged_at is None
    assert [e for e in await outbox(db, NOTICES.name) if e.subtype == "acknowledged"] == []


async def test_a_post_without_the_page_nonce_is_refused(db: Database, settings: Settings) -> None:
    (notice,) = await sent_notices(db, settings)
    token = AckLinks.from_settings(settings).token(notice.notice_id, notice.created_at)
    async with console(db, settings) as client:
        missing = await client.post(f"/ack/{token}", data={})
        page = await client.get(f"/ack/{token}")
        wrong_form = await client.post(f"/ack/{token}", data={"nonce": nonce(page.text, "/preferences")})
    assert missing.status_code == wrong_form.status_code == 403
    async with db.transaction() as session:
        row = await session.get(NoticeRow, notice.notice_id)
    assert row is not None and row.acknowledged_at is None


async def test_preferences_and_opt_out_are_recorded_and_audited(db: Database, settings: Settings) -> None:
    notice = (await sent_notices(db, settings, channels=("email", "sms")))[0]
    token = AckLinks.from_settings(settings).token(notice.notice_id, notice.created_at)
    async with console(db, settings) as client:
        page = await client.get(f"/ack/{token}")
        prefs = nonce(page.text, "/preferences")
        bad = await client.post(f"/ack/{token}/preferences",
                                data={"nonce": prefs, "language": "de", "channels": ["email"]})
        saved = await client.post(f"/ack/{token}/preferences",
                                  data={"nonce": prefs, "language": "en", "channels": ["sms"]})
        opted = await client.post(f"/ack/{token}/preferences",
                                  data={"nonce": prefs, "language": "en", "channels": ["sms"],
                                        "opt_out": "yes"})
    assert bad.status_code == 422 and saved.status_code == opted.status_code == 200
    async with db.transaction() as session:
        c = await session.get(Contact, notice.contact_id)
        audits = (await session.execute(select(AuditRow).where(
            AuditRow.subject == notice.contact_id).order_by(AuditRow.at))).scalars().all()
    assert c is not None and (c.language, c.channels, c.consent) == ("en", ["sms"], False)
    assert [a.action for a in audits] == ["contact.preferences", "contact.opt_out"]
    assert "555" not in json.dumps([a.before for a in audits] + [a.after for a in audits])


async def test_an_import_keeps_a_contacts_own_choices_until_consent_is_renewed(
        db: Database, settings: Settings) -> None:
    """The officer's sheet (consent, French, email) must not re-subscribe a contact who opted
    out, nor undo their language and channels; a recorded renewal of consent gives the sheet
    back its say."""
    notice = (await sent_notices(db, settings, channels=("email", "sms")))[0]
    token = AckLinks.from_settings(settings).token(notice.notice_id, notice.created_at)
    async with console(db, settings) as client:
        page = await client.get(f"/ack/{token}")
        opted = await client.post(f"/ack/{token}/preferences",
                                  data={"nonce": nonce(page.text, "/preferences"), "language": "en",
                                        "channels": ["sms"], "opt_out": "yes"})
    assert opted.status_code == 200
    sheet = registry([contact(1, channels=("email", "sms"), language="fr")])

    async def reimport() -> tuple[dict[str, int], tuple[str, list[str], bool]]:
        async with db.transaction() as session:
            counts = await apply_registry(session, sheet)
        async with db.transaction() as session:
            c = await session.get(Contact, notice.contact_id, populate_existing=True)
        assert c is not None
        return counts, (c.language, c.channels, c.consent)

    counts, kept = await reimport()
    assert counts["own_choices_kept"] == 1 and kept == ("en", ["sms"], False)
    counts, kept = await reimport()  # and again: a choice is not forgotten by being kept once
    assert counts["own_choices_kept"] == 1 and kept == ("en", ["sms"], False)

    async with db.transaction() as session:
        with pytest.raises(LookupError, match="--note"):
            await renew_consent(session, notice.contact_id, note=" ", actor="officer")
        await renew_consent(session, notice.contact_id, note="signed form, 25 Nov", actor="officer")
    counts, back = await reimport()
    assert counts["own_choices_kept"] == 0 and back == ("fr", ["email", "sms"], True)
    async with db.transaction() as session:
        renewed = (await session.execute(select(AuditRow).where(
            AuditRow.action == "contact.consent_renewed"))).scalars().one()
    assert (renewed.actor, renewed.reason) == ("officer", "signed form, 25 Nov")


async def test_a_concern_becomes_a_partner_report_incident(db: Database, settings: Settings) -> None:
    (notice,) = await sent_notices(db, settings)
    token = AckLinks.from_settings(settings).token(notice.notice_id, notice.created_at)
    async with console(db, settings) as client:
        page = await client.get(f"/ack/{token}")
        data = {"nonce": nonce(page.text, "/report"), "text": "Graffiti on our door this morning",
                "urgent": "yes"}
        first = await client.post(f"/ack/{token}/report", data=data)
        again = await client.post(f"/ack/{token}/report", data=data)  # a double submit
        empty = await client.post(f"/ack/{token}/report", data={**data, "text": "  "})
    assert first.status_code == again.status_code == 200 and empty.status_code == 422
    (event,) = await outbox(db, INCIDENTS.name)
    incident = GlobalIncident.model_validate_json(event.payload)
    assert incident.kind is FeedKind.PARTNER_REPORT and "urgent" in incident.categories
    assert incident.summary == "Graffiti on our door this morning"
    assert incident.title.startswith("URGENT: Partner report from Sample Mosque")


async def test_sms_reply_acknowledges_the_matching_notice(db: Database, settings: Settings) -> None:
    notices = await sent_notices(db, settings, channels=("email", "sms"))
    sms_notice = next(n for n in notices if n.channel == "sms")
    s = settings.model_copy(update={"sms_inbound_secret": SecretStr(INBOUND_SECRET)})

    async def reply(text: str, secret: str = INBOUND_SECRET) -> httpx.Response:
        body = json.dumps({"from": "+15550101", "text": text}).encode()
        return await client.post("/sms/inbound", content=body,
                                 headers={SIGNATURE_HEADER: sign(secret, body)})

    async with console(db, s) as client:
        forged = await reply(f"ACK {sms_notice.ack_code}", secret="wrong")
        other = await reply("hello")
        wrong_code = await reply("ACK 000000" if sms_notice.ack_code != "000000" else "ACK 000001")
        ok = await reply(f"ack {sms_notice.ack_code}")
        replay = await reply(f"ACK {sms_notice.ack_code}")
    assert forged.status_code == 403
    assert other.json()["acknowledged"] is None and wrong_code.json()["acknowledged"] is None
    assert ok.json() == {"acknowledged": sms_notice.notice_id, "new": True}
    assert replay.json() == {"acknowledged": sms_notice.notice_id, "new": False}
    async with db.transaction() as session:
        email = await session.get(NoticeRow, next(n.notice_id for n in notices if n.channel == "email"))
    assert email is not None and email.acknowledged_at is None  # only the SMS notice


def twilio(settings: Settings) -> Settings:
    """The SMS gateway as Twilio: its form posts, signed with ``twilio-token``."""
    return settings.model_copy(update={"sms_gateway_kind": "twilio",
                                       "sms_gateway_token": SecretStr("twilio-token")})


async def test_twilio_style_reply_without_code_takes_the_latest_open_sms(db: Database,
                                                                        settings: Settings) -> None:
    notices = await sent_notices(db, settings, channels=("sms",))
    s = twilio(settings)
    params = {"From": "+1 555 0101", "Body": "OK", "MessageSid": "SM1"}
    url = s.public_base_url + "/sms/inbound"
    async with console(db, s) as client:
        bad = await client.post("/sms/inbound", data=params, headers={"X-Twilio-Signature": "x"})
        ok = await client.post("/sms/inbound", data=params, headers={
            "X-Twilio-Signature": twilio_signature("twilio-token", url, params)})
    assert bad.status_code == 403 and ok.status_code == 200 and "<Response>" in ok.text
    async with db.transaction() as session:
        row = await session.get(NoticeRow, notices[0].notice_id)
    assert row is not None and row.acknowledged_via == "sms"


async def test_sms_delivery_receipts_mark_the_notice_delivered_or_failed_once(
        db: Database, settings: Settings) -> None:
    """The gateway's receipts (signed like replies) move a sent SMS notice to delivered, or to
    failed with the gateway's reason; a repeat, an unknown reference, a progress status or a
    receipt after the acknowledgement changes nothing."""
    notices = await sent_notices(db, settings, channels=("email", "sms"))
    sms_notice = next(n for n in notices if n.channel == "sms")
    assert sms_notice.state == "sent" and sms_notice.provider_ref == "gw-ref"
    s = settings.model_copy(update={"sms_inbound_secret": SecretStr(INBOUND_SECRET)})

    async def receipt(status: str, ref: str = "gw-ref", secret: str = INBOUND_SECRET,
                      **extra: str) -> httpx.Response:
        body = json.dumps({"id": ref, "status": status, **extra}).encode()
        return await client.post("/sms/status", content=body,
                                 headers={SIGNATURE_HEADER: sign(secret, body)})

    async def state() -> tuple[str, str | None]:
        async with db.transaction() as session:
            row = await session.get(NoticeRow, sms_notice.notice_id, populate_existing=True)
        assert row is not None
        return row.state, row.error

    async with console(db, s) as client:
        forged = await receipt("delivered", secret="wrong")
        unknown = await receipt("delivered", ref="other-ref")
        progress = await receipt("sending")
        assert (forged.status_code, await state()) == (403, ("sent", None))
        assert unknown.json() == progress.json() == {"notice": None, "state": None}
        delivered = await receipt("delivered")
        again = await receipt("delivered")
        late_failure = await receipt("undelivered", error="30003")
    assert delivered.json() == {"notice": sms_notice.notice_id, "state": "delivered"}
    assert again.json()["notice"] is None and late_failure.json()["notice"] is None
    assert await state() == ("delivered", None)
    events = [e for e in await outbox(db, NOTICES.name)
              if e.event_id == f"{sms_notice.notice_id}:delivered"]
    assert len(events) == 1 and json.loads(events[0].payload)["state"] == "delivered"

    async with db.transaction() as session:  # a second notice, failed by its receipt
        await session.execute(NoticeRow.__table__.update().where(
            NoticeRow.notice_id == sms_notice.notice_id).values(state="sent", provider_ref="gw-2"))
    async with console(db, s) as client:
        failed = await receipt("undelivered", ref="gw-2", error="30003")
    assert failed.json() == {"notice": sms_notice.notice_id, "state": "failed"}
    assert await state() == ("failed", "the SMS gateway reported undelivered (30003)")


async def test_twilio_status_callbacks_are_signed_and_recorded(db: Database, settings: Settings) -> None:
    notices = await sent_notices(db, settings, channels=("sms",))
    s = twilio(settings)
    params = {"MessageSid": "gw-ref", "MessageStatus": "delivered", "To": "+15550101"}
    url = s.public_base_url + "/sms/status"
    async with console(db, s) as client:
        bad = await client.post("/sms/status", data=params, headers={"X-Twilio-Signature": "x"})
        inbound_url = await client.post("/sms/status", data=params, headers={  # signed for another path
            "X-Twilio-Signature": twilio_signature("twilio-token", s.public_base_url + "/sms/inbound",
                                                   params)})
        ok = await client.post("/sms/status", data=params, headers={
            "X-Twilio-Signature": twilio_signature("twilio-token", url, params)})
    assert bad.status_code == inbound_url.status_code == 403
    assert ok.status_code == 200 and "<Response>" in ok.text
    async with db.transaction() as session:
        row = await session.get(NoticeRow, notices[0].notice_id)
    assert row is not None and row.state == "delivered"
