"""The centre notifier against a real SMTP server and a real HTTP receiver: success,
scheduled retry, permanent failure with dead letter, dropped connection; signed webhooks."""

from __future__ import annotations

from pydantic import SecretStr
from sqlalchemy import select

from notifiers.centre import RetryPolicy
from notifiers.channels.http import SIGNATURE_HEADER, verify
from prevent.contracts import DEADLETTER, NOTICES
from prevent.platform.config import Settings
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import NoticeRow, OutboxRow

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

SECRET = "webhook-test-secret"


async def notices(db: Database) -> list[NoticeRow]:
    async with db.transaction() as session:
        return list((await session.execute(select(NoticeRow).order_by(NoticeRow.contact_id))).scalars())


async def outbox(db: Database, topic: str) -> list[OutboxRow]:
    async with db.transaction() as session:
        return list((await session.execute(select(OutboxRow).where(OutboxRow.topic == topic)
                                            .order_by(OutboxRow.seq))).scalars())


async def test_email_sent_once_with_message_id_from_the_notice(db: Database, settings: Settings) -> None:
    await load_registry(db, registry([contact(1), contact(2, language="fr")]))
    with ScriptedSmtp() as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        assert await n.handle_alert(alert(), playbook()) == 2
        assert await n.handle_alert(alert(), playbook()) == 0  # redelivered event: nothing new
    rows = await notices(db)
    assert [r.state for r in rows] == ["sent", "sent"]
    assert sorted(smtp.message_ids()) == sorted(f"<{r.notice_id}@example.org>" for r in rows)
    french = next(m for m in smtp.received if "fr" in m["Content-Language"])
    assert french["Subject"].startswith("Avis")
    assert {p.get_content_type() for p in french.walk()} >= {"text/plain", "text/html"}
    assert [e.subtype for e in await outbox(db, NOTICES.name)] == ["sent", "sent"]


async def test_a_4xx_reply_is_retried_then_sent(db: Database, settings: Settings) -> None:
    """The retry is a due time on the row, not a sleep: the first pass returns at once."""
    await load_registry(db, registry([contact(1)]))
    with ScriptedSmtp(["451 try again later", "452 still busy"]) as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        assert await n.handle_alert(alert(), playbook()) == 0
        (row,) = await notices(db)
        assert (row.state, row.attempts, row.refusals) == ("queued", 1, 1)
        assert row.next_attempt_at is not None and "451" in (row.error or "")
        assert await settle(n) == 1
    (row,) = await notices(db)
    assert (row.state, row.attempts, row.refusals, smtp.attempts) == ("sent", 3, 2, 3)
    assert row.error is None and row.next_attempt_at is None
    assert len(smtp.received) == 1


async def test_a_5xx_reply_fails_at_once_and_is_dead_lettered(db: Database, settings: Settings) -> None:
    await load_registry(db, registry([contact(1)]))
    with ScriptedSmtp(["550 mailbox unavailable"]) as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        assert await n.handle_alert(alert(), playbook()) == 0
    (row,) = await notices(db)
    assert (row.state, row.attempts) == ("failed", 1)
    assert "550" in (row.error or "")
    (dead,) = await outbox(db, DEADLETTER.name)
    assert dead.key == row.notice_id
    assert dead.headers and dead.headers["x-origin-topic"] == "prevent.alerts.v1"
    assert "550" in dead.headers["x-error"]


async def test_a_4xx_reply_past_the_limit_fails(db: Database, settings: Settings) -> None:
    await load_registry(db, registry([contact(1)]))
    with ScriptedSmtp(["451 a", "451 b", "451 c", "451 d"]) as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        await n.handle_alert(alert(), playbook())
        assert await settle(n) == 0
    (row,) = await notices(db)
    assert (row.state, row.attempts, smtp.attempts) == ("failed", 3, 3)
    assert "SMTP 451: c" in (row.error or "") and "gave up after 3" in (row.error or "")


async def test_a_dropped_connection_is_retried_later_with_the_same_message(
        db: Database, settings: Settings) -> None:
    """The relay being down no longer raises out of the handler (which held the partition):
    the notice waits for its due time, not counted as a refusal."""
    await load_registry(db, registry([contact(1)]))
    with ScriptedSmtp(["drop"]) as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}),
                     retry=RetryPolicy(base_delay=60))  # the next attempt is due in 30-60 s
        assert await n.handle_alert(alert(), playbook()) == 0
        (row,) = await notices(db)
        assert (row.state, row.refusals) == ("queued", 0)
        assert "unavailable" in (row.error or "") and row.next_attempt_at is not None
        assert await n.handle_alert(alert(), playbook()) == 0  # redelivered event: not due yet
        assert await settle(n) == 1
    (row,) = await notices(db)
    assert (row.state, row.attempts) == ("sent", 2)
    assert smtp.message_ids() == [f"<{row.notice_id}@example.org>"]


async def test_webhooks_are_signed_keyed_and_retried_on_503(db: Database, settings: Settings) -> None:
    with ScriptedHttp([503, 503]) as http:
        await load_registry(db, registry([
            contact(1, channels=["webhook"], webhook_url=f"{http.url}/hook"),
            contact(2, channels=["webhook"], webhook_url=f"{http.url}/cap", webhook_format="cap")]))
        s = settings.model_copy(update={"allow_private_addresses": True,
                                        "webhook_signing_secret": SecretStr(SECRET)})
        n = notifier(db, s)
        # Sent concurrently: the two 503s go to either notice; the retries come when due.
        assert await n.handle_alert(alert(exercise=True), playbook()) + await settle(n) == 2
    rows = {r.contact_id: r for r in await notices(db)}
    assert {r.state for r in rows.values()} == {"sent"}
    assert len(http.received) == 4  # two 503s, then one delivery each
    for req in http.received:
        assert verify(SECRET, req.body, req.headers[SIGNATURE_HEADER])
        assert not verify("another-secret", req.body, req.headers[SIGNATURE_HEADER])
        assert req.headers["Prevent-Exercise"] == "true"
    for row in rows.values():
        tries = [r for r in http.received if r.headers["Idempotency-Key"] == row.notice_id]
        assert len(tries) == row.attempts and len({r.body for r in tries}) == 1  # same body each time
    assert sum(r.attempts for r in rows.values()) == 4
    retried = [r for r in http.received if r.headers["Idempotency-Key"] == rows["contact-001"].notice_id]
    body = retried[-1].json()
    assert body["notice_id"] == rows["contact-001"].notice_id and body["exercise"] is True
    assert body["subject"].startswith("[EXERCISE]") and "/ack/" in body["ack_url"]
    cap = next(r for r in http.received if r.path == "/cap")
    assert cap.headers["Content-Type"] == "application/cap+xml"
    assert b"<status>Exercise</status>" in cap.body


async def test_webhook_to_a_private_address_is_refused_without_sending(db: Database,
                                                                       settings: Settings) -> None:
    with ScriptedHttp() as http:
        await load_registry(db, registry([contact(1, channels=["webhook"],
                                                  webhook_url=f"{http.url}/hook")]))
        assert await notifier(db, settings).handle_alert(alert(), playbook()) == 0
    (row,) = await notices(db)
    assert row.state == "failed" and "non-public address" in (row.error or "")
    assert http.received == []


async def test_a_long_outage_does_not_use_up_the_retries(db: Database, settings: Settings) -> None:
    """Drops (the server is down) count as tries in the log, not against the retry limit:
    after many of them, a 4xx reply is still retried and the notice is sent."""
    await load_registry(db, registry([contact(1)]))
    with ScriptedSmtp(["drop"] * 6 + ["451 busy"]) as smtp:
        n = notifier(db, settings.model_copy(update={"smtp_port": smtp.port}))
        assert await n.handle_alert(alert(), playbook()) == 0
        assert await settle(n) == 1
    (row,) = await notices(db)
    assert (row.state, row.attempts, row.refusals) == ("sent", 8, 1)
    assert smtp.message_ids() == [f"<{row.notice_id}@example.org>"]
