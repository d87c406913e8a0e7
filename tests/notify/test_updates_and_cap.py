"""Updates refer to the first notice, closing sends an all-clear to those notified,
exercises say so in every channel, and every notice is a valid CAP 1.2 document."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import select

from notifiers.cap_notices import CAP_NS
from prevent.contracts import AlertStatus
from prevent.notices.channel import OutgoingNotice
from prevent.notices.sms_text import segments, sms_text
from prevent.platform.config import Settings
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import NoticeRow

from .helpers import CAP_XSD, ScriptedSmtp, alert, contact, load_registry, notifier, playbook, registry

NS = {"cap": CAP_NS}


@pytest.fixture(scope="module")
def cap_schema():
    if not CAP_XSD.exists():
        pytest.skip(f"CAP 1.2 schema not found at {CAP_XSD}")
    import xmlschema

    return xmlschema.XMLSchema(str(CAP_XSD))


async def rows(db: Database, kind: str) -> list[NoticeRow]:
    async with db.transaction() as session:
        return list((await session.execute(select(NoticeRow).where(NoticeRow.kind == kind)
                                            .order_by(NoticeRow.contact_id))).scalars())


async def test_update_and_all_clear_go_to_those_notified_as_valid_cap(db: Database, settings: Settings,
                                                                      cap_schema) -> None:
    await load_registry(db, registry([contact(1), contact(2, language="fr")]))
    with ScriptedSmtp(["250 ok", "550 no such user"]) as smtp:  # contact 2 is never reached
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        await n.handle_alert(alert(revision=2, severity=3), playbook())
        await n.handle_alert(alert(revision=3, severity=4, previous_severity=3), playbook())
        await n.handle_alert(alert(revision=3, severity=4, previous_severity=3), playbook())  # again
        await n.handle_alert(alert(revision=4, severity=4, status=AlertStatus.CLOSED), playbook())
    (first, failed) = await rows(db, "initial")
    assert (first.state, failed.state) == ("sent", "failed")
    (upd,) = await rows(db, "update")
    (clear,) = await rows(db, "all_clear")
    assert upd.contact_id == clear.contact_id == first.contact_id
    assert [m["Subject"].split(":")[0] for m in smtp.received] == ["Advisory", "Update", "All clear"]
    for row in (first, failed, upd, clear):
        cap_schema.validate(row.cap_xml)
    # S314: the CAP XML our own code made, not untrusted input
    doc = {r.kind: ET.fromstring(r.cap_xml) for r in (first, upd, clear)}  # noqa: S314
    assert [doc[k].findtext("cap:msgType", namespaces=NS) for k in ("initial", "update", "all_clear")] \
        == ["Alert", "Update", "Cancel"]
    assert doc["initial"].findtext("cap:identifier", namespaces=NS) == first.notice_id
    refs = doc["update"].findtext("cap:references", namespaces=NS)
    assert refs.split(",")[:2] == ["prevent@example.org", first.notice_id]
    assert doc["all_clear"].findtext("cap:references", namespaces=NS) == refs
    assert doc["update"].findtext("cap:info/cap:severity", namespaces=NS) == "Extreme"
    assert "/ack/" not in first.cap_xml  # the link is the contact's capability, not the document's
    # L7: the CAP document, which any role can fetch, names no contact; the notice's own body does.
    names = {contact(1).name, contact(2).name}
    for row in (first, failed, upd, clear):
        assert not any(name in row.cap_xml for name in names), row.cap_xml
    assert any(name in first.body for name in names)


async def test_exercise_is_marked_in_every_channel(db: Database, settings: Settings,
                                                   cap_schema) -> None:
    await load_registry(db, registry([contact(1)]))
    with ScriptedSmtp() as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        await n.handle_alert(alert(exercise=True), playbook())
    (row,) = await rows(db, "initial")
    cap_schema.validate(row.cap_xml)
    # S314: the CAP XML our own code made, not untrusted input
    assert ET.fromstring(row.cap_xml).findtext("cap:status", namespaces=NS) == "Exercise"  # noqa: S314
    (mail,) = smtp.received
    assert mail["Subject"].startswith("[EXERCISE]") and mail["X-Prevent-Exercise"] == "yes"
    assert "EXERCISE" in mail.get_body(("plain",)).get_content()
    async with db.transaction() as session:
        out = await n._outgoing(session, row)
    assert out is not None and out.payload["exercise"] is True
    assert sms_text(out, 3).startswith("EXERCISE: [EXERCISE]")


def sms(subject: str, text: str, language: str = "en") -> OutgoingNotice:
    return OutgoingNotice(notice_id="ntc_x", address="+15550100", subject=subject,
                          text=text + "\nPlease confirm: https://prevent.example.org/ack/TOKEN\n",
                          html="", language=language, exercise=False,
                          ack_url="https://prevent.example.org/ack/" + "T" * 80, ack_code="123456")


@pytest.mark.parametrize(("text", "expected"), [
    ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3),
    ("€" * 80, 1), ("€" * 81, 2),  # extension characters count twice
    ("é" * 160, 1),  # é is in the GSM-7 basic set
    ("ç" * 70, 1), ("ç" * 71, 2), ("ç" * 134, 2), ("ç" * 135, 3),  # ç is not: UCS-2
    ("😀" * 35, 1), ("😀" * 36, 2),  # astral characters are two UTF-16 units
])
def test_segments(text: str, expected: int) -> None:
    assert segments(text) == expected


@pytest.mark.parametrize("language", ["en", "fr"])
@pytest.mark.parametrize("max_segments", [1, 2, 3])
def test_long_sms_is_shortened_keeping_the_ack_link(language: str, max_segments: int) -> None:
    notice = sms("Avis : attaque contre une mosquée" if language == "fr" else "Advisory: attack",
                 "Long body. " * 100, language)
    text = sms_text(notice, max_segments)
    assert segments(text) <= max_segments
    assert text.endswith(notice.ack_url) and "ACK 123456" in text
    assert "/ack/TOKEN" not in text  # the body's own link line is dropped, not duplicated


def test_short_sms_is_not_shortened() -> None:
    notice = sms("Advisory", "Stay alert.")
    text = sms_text(notice, 3)
    assert "..." not in text and "Stay alert." in text and segments(text) <= 3
