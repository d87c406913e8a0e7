"""Variant (not part of the project): M1 on the old and new code with the failure as an
assertion: one broken contact (an address httpx cannot parse; a template that raises; an
email header with CR/LF) must not stop the alert's other notices."""

from __future__ import annotations

from notifiers.templates import NoticeRenderer
from prevent.config import Settings
from prevent.storage.db import Database

from .helpers import ScriptedSmtp, alert, contact, load_registry, notifier, playbook, registry
from .test_delivery_isolation import BROKEN_URL, rows, store_unchecked


async def _handle(n, a, p) -> str | None:  # noqa: ANN001
    try:
        await n.handle_alert(a, p)
    except Exception as exc:  # noqa: BLE001 - the old handler let it out
        return f"{type(exc).__name__}: {exc}"
    return None


async def test_v_m1_a_webhook_url_httpx_cannot_parse_stops_no_other_notice(
        db: Database, settings: Settings) -> None:
    await load_registry(db, registry([contact(1, channels=["webhook"], webhook_url="https://h.example/x"),
                                      contact(2)]))
    await store_unchecked(db, "contact-001", webhook_url=BROKEN_URL)
    with ScriptedSmtp() as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        raised = await _handle(n, alert(), playbook())
    states = {c: r.state for c, r in (await rows(db)).items()}
    assert states.get("contact-002") == "sent" and len(smtp.received) == 1, (states, raised)
    assert states.get("contact-001") == "failed" and raised is None, (states, raised)


async def test_v_m1_a_template_that_raises_stops_no_other_notice(db: Database, settings: Settings) -> None:
    class FailsInFrench(NoticeRenderer):
        def render(self, name, language, context):  # noqa: ANN001, ANN201
            if language == "fr":
                raise RuntimeError("template exploded")
            return super().render(name, language, context)

    await load_registry(db, registry([contact(1, language="fr"), contact(2), contact(3)]))
    with ScriptedSmtp() as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        n.renderer = FailsInFrench(settings.playbooks_dir / "templates")
        raised = await _handle(n, alert(), playbook())
    states = {c: r.state for c, r in (await rows(db)).items()}
    assert (states.get("contact-002"), states.get("contact-003")) == ("sent", "sent"), (states, raised)
    assert len(smtp.received) == 2 and raised is None, (states, raised)


async def test_v_m1_an_email_header_with_crlf_stops_no_other_notice(db: Database, settings: Settings) -> None:
    await load_registry(db, registry([contact(1), contact(2)]))
    await store_unchecked(db, "contact-001", email="person1@example.org\r\nBcc: x@evil.example")
    with ScriptedSmtp() as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        raised = await _handle(n, alert(), playbook())
    states = {c: r.state for c, r in (await rows(db)).items()}
    assert states.get("contact-002") == "sent" and len(smtp.received) == 1, (states, raised)
    assert states.get("contact-001") == "failed" and raised is None, (states, raised)
