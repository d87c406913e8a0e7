"""Issue 23, acceptances 1 and 2 on a real broker: with one partner's webhook timing out,
one contact's stored webhook URL broken (``http://0177.0.0.1/hook``, M1) and control
characters in the alert titles, the other notices of that alert, and of the next alert on the
same partition, arrive within 2 s of the confirmation, once each; the broken one is failed
with its reason.

The centre notifier runs as its Kafka subscriber (``running_system``) on an embedded broker
of its own, and on the session's Apache Kafka with fresh topics; confirmed alerts are
published to ``prevent.alerts.v1`` as the rules service and the console publish them. A
real SMTP server and real HTTP receivers (loopback) take the notices; one receiver never
answers, until the notifier's 10 s timeout.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer
from notify.helpers import ScriptedHttp, ScriptedSmtp, alert, contact, load_registry, registry
from sqlalchemy import select, update

from prevent.cli.services import running_system
from prevent.contracts import ALERTS, Alert, cloudevent_headers
from prevent.platform.storage.tables import Contact, NoticeRow

pytestmark = pytest.mark.e2e
LIMIT = 2.0  # seconds from the confirmation event to every other notice's arrival
TITLE = "Gunman attacks mosque\r\nBcc: someone@evil.example\x00"


async def publish(bootstrap: str, a: Alert) -> float:
    """Publish a confirmed alert on partition 0 (every alert here on the one partition);
    returns the loop time once the broker acknowledged it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            ALERTS.name, a.model_dump_json().encode(), key=a.alert_id.encode(), partition=0,
            headers=[(k, v.encode()) for k, v in cloudevent_headers(
                ALERTS, f"{a.alert_id}:{a.revision}", "test", "confirmed").items()])
    finally:
        await producer.stop()
    return asyncio.get_running_loop().time()


async def test_a_timing_out_webhook_delays_no_other_notice(settings, system_engine) -> None:
    loop = asyncio.get_running_loop()
    with ScriptedSmtp() as smtp, ScriptedHttp() as good, ScriptedHttp() as dead:
        config = settings.model_copy(update={
            "demo": False, "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
            "allow_private_addresses": True, "http_timeout_seconds": 10.0,
            "kafka_bootstrap": system_engine.bootstrap or None})
        async with running_system(config, services=("centre-notifier",), feeds=[]) as system:
            await load_registry(system.ctx.db, registry([
                contact(1, channels=["webhook"], webhook_url=f"{dead.url}/hang"),
                contact(2), contact(3, language="fr"),
                contact(4, channels=["webhook"], webhook_url=f"{good.url}/hook"),
                contact(5, channels=["webhook"], webhook_url=f"{good.url}/was-fine")], sites=2))
            async with system.ctx.db.transaction() as session:  # stored before the edge checks
                await session.execute(update(Contact).where(Contact.contact_id == "contact-005")
                                      .values(webhook_url="http://0177.0.0.1/hook"))

            async def arrived(alert_id: str) -> bool:
                async with system.ctx.db.transaction() as session:
                    ids = set((await session.execute(select(NoticeRow.notice_id).where(
                        NoticeRow.alert_id == alert_id))).scalars())
                mails = [m for m in smtp.received if str(m["X-Prevent-Notice-Id"]) in ids]
                hooks = [r for r in good.received if r.headers.get("Idempotency-Key") in ids]
                return len(mails) == 2 and len(hooks) == 1

            async def wait_arrival(alert_id: str, since: float, limit: float) -> float:
                while not await arrived(alert_id):
                    assert loop.time() - since < limit, f"notices of {alert_id} held back"
                    await asyncio.sleep(0.02)
                return loop.time() - since

            # Warm-up: the consumer joins its group (its first fetch) before anything is timed.
            warm = alert(alert_id="alr_slow_warmup")
            await wait_arrival(warm.alert_id, await publish(system.bootstrap, warm), 60)

            first = alert(alert_id="alr_slow_first").model_copy(update={"title": TITLE})
            took_first = await wait_arrival(first.alert_id, await publish(system.bootstrap, first),
                                            LIMIT)
            nxt = alert(alert_id="alr_slow_next").model_copy(update={"title": TITLE})
            took_next = await wait_arrival(nxt.alert_id, await publish(system.bootstrap, nxt), LIMIT)
            # The dead partner's requests were still open meanwhile (its timeout is 10 s).
            assert len(dead.hung) >= 2
            async with system.ctx.db.transaction() as session:
                hanging = (await session.execute(select(NoticeRow).where(
                    NoticeRow.contact_id == "contact-001",
                    NoticeRow.alert_id == first.alert_id))).scalar_one()
            assert hanging.state in ("sending", "queued") and hanging.sent_at is None
            await asyncio.sleep(1)  # would anything arrive twice?
            async with system.ctx.db.transaction() as session:
                broken = (await session.execute(select(NoticeRow).where(
                    NoticeRow.contact_id == "contact-005"))).scalars().all()
    assert len(broken) == 3 and {n.state for n in broken} == {"failed"}
    assert all("0177.0.0.1 reads as an IPv4 address" in (n.error or "") for n in broken)
    for mail in smtp.received:
        assert mail["Bcc"] is None and "\n" not in str(mail["Subject"])
    assert took_first < LIMIT and took_next < LIMIT
    ids = Counter(str(m["Message-ID"]) for m in smtp.received)
    assert len(ids) == 6 and set(ids.values()) == {1}  # 2 emails x 3 alerts, each once
    hooks = Counter(r.headers["Idempotency-Key"] for r in good.received)
    assert len(hooks) == 3 and set(hooks.values()) == {1}
