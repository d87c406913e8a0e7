"""Decisions through the HTTP API reach the notifiers over a real broker: a confirmed alert
is notified exactly once, a dismissed one never."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from prevent import users
from prevent.alerts import states as alerts
from prevent.cli.services import incident_publisher, running_system
from prevent.contracts import ALERTS, Alert, AlertStatus, FeedKind, GlobalIncident, stable_id, utcnow
from prevent.platform.demo import SmtpSink
from prevent.users import Role
from prevent.web.app import create_app

from .test_walking_skeleton import wait_for

pytestmark = pytest.mark.e2e


def incident(key: str, title: str, summary: str) -> GlobalIncident:
    now = utcnow()
    return GlobalIncident(incident_id=stable_id("inc", key), feed_id="e2e", kind=FeedKind.RSS,
                          title=title, summary=summary, published=now - timedelta(minutes=5),
                          first_seen=now, content_hash=stable_id("h", key))


async def alerts_on_kafka(bootstrap: str, settle: float = 2.0) -> list[Alert]:
    consumer = AIOKafkaConsumer(ALERTS.name, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=int(settle * 1000))
        return [Alert.model_validate_json(m.value) for msgs in batches.values() for m in msgs]
    finally:
        await consumer.stop()


async def test_confirm_via_api_notifies_once_and_dismiss_never(settings, system_engine) -> None:
    sink = SmtpSink().start()
    mosque = incident("e2e-mosque", "Arson attack on mosque overnight, no injuries",
                      "A fire was set at the door of a mosque overnight. No one was hurt.")
    shul = incident("e2e-shul", "Arson attack on synagogue, no injuries",
                    "A fire was set at a synagogue overnight.")
    try:
        config = settings.model_copy(update={"smtp_port": sink.port, "demo": True,
                                             "kafka_bootstrap": system_engine.bootstrap or None})
        async with running_system(config, feeds=[]) as system:
            db = system.ctx.db
            async with db.transaction() as session:
                await users.add_user(session, "insp.e2e", Role.DUTY_INSPECTOR, "e2e password long",
                                     actor="test")
                token = await users.issue_token(session, "insp.e2e", actor="test")
            publish = incident_publisher(system.ctx)
            await publish(mosque)
            await publish(shul)

            proposed: dict[str, Alert] = {}

            async def poll() -> None:
                async with db.transaction() as session:
                    for a in await alerts.list_alerts(session, status=["proposed"]):
                        proposed[a.communities[0]] = a

            async def both_proposed() -> None:
                deadline = asyncio.get_running_loop().time() + 30
                while len(proposed) < 2:
                    assert asyncio.get_running_loop().time() < deadline, proposed
                    await poll()
                    await asyncio.sleep(0.2)

            await both_proposed()
            app = create_app(lambda _app: None)  # type: ignore[arg-type,return-value]
            app.state.console = system.console_state()
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                         headers={"Authorization": f"Bearer {token}"}) as client:
                confirmed = await client.post(f"/api/alerts/{proposed['muslim'].alert_id}/confirm",
                                              json={"revision": 1, "note": "e2e confirm"})
                dismissed = await client.post(f"/api/alerts/{proposed['jewish'].alert_id}/dismiss",
                                              json={"revision": 1, "disposition": "no_local_action",
                                                    "note": "e2e dismiss"})
            assert confirmed.status_code == 200, confirmed.text
            assert dismissed.status_code == 200, dismissed.text
            await wait_for(lambda: len(sink.received) >= 1)
            await asyncio.sleep(3)  # would a second notice, or one for the dismissed alert, arrive?
            events = await alerts_on_kafka(system.bootstrap)
    finally:
        sink.stop()

    assert [m.to for m in sink.received] == [("admin@riverside-centre.example.org",)]
    mosque_id, shul_id = proposed["muslim"].alert_id, proposed["jewish"].alert_id
    confirmed_events = [e for e in events if e.status is AlertStatus.CONFIRMED]
    assert [(e.alert_id, e.decided_by) for e in confirmed_events] == [(mosque_id, "insp.e2e")]
    assert [e.status for e in events if e.alert_id == shul_id] == [AlertStatus.PROPOSED,
                                                                   AlertStatus.DISMISSED]
