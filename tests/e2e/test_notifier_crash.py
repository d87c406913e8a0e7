"""Kill the centre notifier (SIGKILL) in the middle of a fan-out and restart it: every
recipient ends up with exactly one notice (one distinct Message-ID each), none missing.

The notifier runs as the real `prevent centre-notifier` process on its own embedded
Kafka broker, and on Apache Kafka (fresh topics), and a SQLite file shared with the test.
Before the restart the dead notifier's send leases are made to lapse at once (what 60 s of
wall clock would do: ``notify.helpers.lapse_claims_of_the_dead``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from fixtures.broker import TEST_TOPICS
from fixtures.kafka import engine_broker, session_timeout_ms
from notify.helpers import PLAYBOOK_FILE, alert, contact, lapse_claims_of_the_dead, load_registry, registry
from sqlalchemy import select

from prevent.contracts import ALERTS, cloudevent_headers
from prevent.platform.netutil import free_port
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import NoticeRow
from prevent.rules.playbooks import store

pytestmark = pytest.mark.e2e
RECIPIENTS = 50
PREVENT = Path(sys.executable).parent / "prevent"


class SlowSink:
    """Accepts every message, slowly enough that a kill lands mid fan-out."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.05)
        self.messages.append(message_from_bytes(envelope.content, policy=default_policy))
        return "250 OK"


async def wait_until(predicate, limit: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def start_notifier(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen([str(PREVENT), "centre-notifier"], env=env, cwd=log.parent,
                                stdout=out, stderr=subprocess.STDOUT)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


async def test_sigkill_mid_fan_out_then_restart_sends_each_notice_once(tmp_path: Path,
                                                                     system_engine) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    db = Database(db_url)
    await db.upgrade()
    await load_registry(db, registry([contact(i) for i in range(RECIPIENTS)], sites=10))
    async with db.transaction() as session:
        await store.apply_sources(session, [(str(PLAYBOOK_FILE), PLAYBOOK_FILE.read_text())], author="t")

    async def sent_rows() -> list[NoticeRow]:
        async with db.transaction() as session:
            return list((await session.execute(select(NoticeRow))).scalars())

    sink = SlowSink()
    sink.controller.start()
    log = tmp_path / "notifier.log"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        async with engine_broker(system_engine, TEST_TOPICS) as bootstrap:
            env = {**os.environ, "PREVENT_KAFKA_BOOTSTRAP": bootstrap,
                   "PREVENT_DATABASE_URL": db_url, "PREVENT_SMTP_HOST": "127.0.0.1",
                   "PREVENT_SMTP_PORT": str(sink.controller.port),
                   "PREVENT_SECRET_KEY": "crash-test-secret", "PREVENT_VAR_DIR": str(tmp_path / "var"),
                   "PREVENT_KAFKA_SESSION_TIMEOUT_MS": str(session_timeout_ms(system_engine)),
                   "PREVENT_CONFIG_FILE": str(tmp_path / "none.toml")}
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
            await producer.start()
            try:
                a = alert(severity=3)
                await producer.send_and_wait(
                    ALERTS.name, a.model_dump_json().encode(), key=a.alert_id.encode(),
                    headers=[(k, v.encode()) for k, v in cloudevent_headers(
                        ALERTS, f"{a.alert_id}:{a.revision}", "test", "confirmed").items()])
            finally:
                await producer.stop()

            processes.append(start_notifier(env, log))

            async def some_sent() -> bool:
                return len(sink.messages) >= 15

            await wait_until(some_sent, 90, "the first sends")
            processes[0].send_signal(signal.SIGKILL)
            processes[0].wait(10)
            before_restart = len({str(m["Message-ID"]) for m in sink.messages})
            assert before_restart < RECIPIENTS, "the kill came too late to test anything"
            await lapse_claims_of_the_dead(db)

            processes.append(start_notifier(env, log))

            async def all_sent() -> bool:
                rows = await sent_rows()
                return len(rows) == RECIPIENTS and all(r.state == "sent" for r in rows)

            await wait_until(all_sent, 120, "every notice to be sent after the restart")
            await asyncio.sleep(1)  # would anything more arrive?
            stop(processes)  # while the broker still runs, so the consumer leaves cleanly
    finally:
        stop(processes)
        sink.controller.stop()
        rows = await sent_rows()
        await db.dispose()

    ids = Counter(str(m["Message-ID"]) for m in sink.messages)
    by_recipient = Counter(str(m["To"]) for m in sink.messages)
    assert len(ids) == RECIPIENTS  # none missing
    assert set(ids) == {f"<{r.notice_id}@example.org>" for r in rows}
    assert {r.state for r in rows} == {"sent"}
    assert len(by_recipient) == RECIPIENTS
    # At most the one message in flight at the kill arrived twice, with the same Message-ID,
    # and the notice log shows that resend (a second attempt).
    resent = {mid for mid, n in ids.items() if n > 1}
    assert len(resent) <= 1
    attempts = {f"<{r.notice_id}@example.org>": r.attempts for r in rows}
    assert all(attempts[mid] >= 2 for mid in resent)
    assert "resending notice" in log.read_text() or not resent
