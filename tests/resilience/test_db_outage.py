"""PostgreSQL becomes unreachable for 9 seconds while incidents keep arriving and notices are
going out; afterwards every expected alert exists exactly once, every recipient has exactly one
notice, each sent once (one distinct Message-ID each, none missing), and every incident is stored.

The services are real `prevent rules` / `prevent centre-notifier` processes on an embedded
broker of their own, and on the session's Apache Kafka with fresh topics; their database
URL points at a TCP proxy of the test's own in front of the machine's PostgreSQL (which is
never stopped). ``cut()`` resets every open connection and refuses new ones; ``restore()``
lets them through again. The cut comes at the worst moment for a notice:
while the SMTP sink is receiving one, so its send succeeds and recording it finds no database.
The services hold their partitions and retry without committing offsets; nothing is lost or
done twice.

The test's own reads go straight to PostgreSQL (not through the proxy), in a database of its
own created for the run and dropped afterwards (conftest's ``database_url``: the services take
one URL, so a schema on the shared test database could not be given to them).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from fixtures.broker import TEST_TOPICS
from fixtures.kafka import Engine, engine_broker, session_timeout_ms
from sqlalchemy.engine import make_url

from prevent.platform.storage.db import Database

from .harness import (
    Services,
    Sink,
    expected_outcome,
    incidents,
    observed,
    prepare,
    produce,
    service_env,
    start_rules_and_centre,
)
from .harness import wait_until as wait
from .tcpproxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(120)]
TOTAL = 600
CHUNK = 15
EVENTS = 12  # grave attacks, 5 reports each: 12 confirmed alerts, 10 recipients each
CUT_AT_MESSAGE = 15  # mid fan-out of the second alert
OUTAGE_S = 9.0
# What the services log when a database call failed and is retried without committing:
# ReliabilityMiddleware ("transient error handling ...") or retry_transient ("...: transient error").
RETRIED = re.compile(r"transient error")


class CuttingSink(Sink):
    """The SMTP sink, cutting the database while it receives its ``at``-th message: the
    notifier's send then succeeds and recording it as sent finds the database gone, the worst
    moment for a notice (a retry that sent it again would be a duplicate)."""

    def __init__(self, proxy: TcpProxy, at: int, delay: float) -> None:
        super().__init__(delay)
        self.proxy = proxy
        self.at = at
        self.loop = asyncio.get_running_loop()  # the test's, where the proxy runs
        self.cut = asyncio.Event()
        self.before_cut: int | None = None  # messages fully received before the cut

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.before_cut is None and len(self.messages) + 1 >= self.at:
            self.before_cut = len(self.messages)
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._cut(), self.loop))
        return await super().handle_DATA(server, session, envelope)

    async def _cut(self) -> None:
        await self.proxy.cut()
        self.cut.set()


# conftest's ``database_url``, on PostgreSQL only: a fresh database of its own, dropped afterwards.
@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                         indirect=True)
async def test_postgres_unreachable_for_9s_mid_stream_nothing_lost_nothing_twice(
        tmp_path: Path, database_url: str, system_engine: Engine) -> None:
    items = incidents(TOTAL, events=EVENTS, reports=5, seed=11)
    expected = await expected_outcome(items, tmp_path)
    assert expected.incidents == TOTAL and sum(expected.alerts.values()) == EVENTS
    assert expected.notices == EVENTS * 10

    direct = make_url(database_url)
    db = Database(database_url)  # the test's view: straight to PostgreSQL, never cut
    await prepare(db)
    proxy = await TcpProxy(direct.host or "127.0.0.1", direct.port or 5432).start()
    via_proxy = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    sink = CuttingSink(proxy, at=CUT_AT_MESSAGE, delay=0.02).accept()
    services = Services(service_env("", via_proxy, sink.port, tmp_path / "var",
                                    session_timeout_ms=session_timeout_ms(system_engine)), tmp_path)
    at_cut: dict[str, int] = {}
    produced = 0
    try:
        async with engine_broker(system_engine, TEST_TOPICS) as bootstrap:
            services.env["PREVENT_KAFKA_BOOTSTRAP"] = bootstrap
            await start_rules_and_centre(services)

            async def outage() -> None:
                await asyncio.wait_for(sink.cut.wait(), 60)  # the sink cut it mid-send
                at_cut["incidents"] = (await observed(db))[2]
                at_cut["produced"] = produced
                await asyncio.sleep(OUTAGE_S)  # incidents keep arriving meanwhile
                at_cut["produced_during"] = produced - at_cut["produced"]
                at_cut["connections"] = proxy.connections
                await proxy.restore()

            async def count_produced(chunk: int) -> None:
                nonlocal produced
                produced = min(TOTAL, (chunk + 1) * CHUNK)

            cutter = asyncio.create_task(outage())
            await produce(bootstrap, items, chunk=CHUNK, pause=0.35, after_chunk=count_produced)
            await cutter

            async def complete() -> bool:
                alerts, notices, count = await observed(db)
                return (count == TOTAL and alerts == expected.alerts
                        and len(notices) == expected.notices
                        and all(n.state == "sent" for n in notices))

            await wait(complete, 75, "every alert and notice after the outage", services.assert_alive)
            await asyncio.sleep(2)  # would anything more arrive?
            alerts, notices, count = await observed(db)
            services.assert_alive()
            # In a thread: the proxy runs on this loop, and the services close their database
            # connections through it as they stop.
            await asyncio.to_thread(services.stop_all)  # while the broker runs: consumers leave cleanly
            exits = {name: proc.returncode for name, proc in services.processes.items()}
    finally:
        await asyncio.to_thread(services.stop_all)
        sink.refuse()
        await proxy.stop()
        await db.dispose()

    # The outage really happened mid-stream, and the services met it and came back.
    assert 0 < at_cut["incidents"] < TOTAL, "the outage must start while incidents are processed"
    assert sink.before_cut == CUT_AT_MESSAGE - 1 < expected.notices, "the outage must start mid fan-out"
    assert at_cut["produced_during"] > 0, "incidents must keep arriving during the outage"
    assert proxy.connections > at_cut["connections"], "the services must reconnect after the outage"
    for name in ("rules", "centre"):
        assert RETRIED.search(services.log(name)), f"{name} never hit the outage"
    assert re.search(r"recording notice \S+ sent: transient error", services.log("centre")), \
        "the notice in flight at the cut must have been sent and then wait to be recorded"

    assert exits == {"rules": 0, "centre": 0}, "the services must stop cleanly on SIGTERM, not be killed"

    assert count == TOTAL
    assert alerts == expected.alerts  # every expected alert, each exactly once
    assert len(notices) == expected.notices and {n.state for n in notices} == {"sent"}
    assert len({(n.contact_id, n.alert_id) for n in notices}) == expected.notices  # one per recipient
    ids = sink.message_ids()
    assert set(ids) == {f"<{n.notice_id}@example.org>" for n in notices}  # none missing
    assert ids.most_common(1)[0][1] == 1, "a notice sent before the outage was sent again"
    assert len(sink.messages) == expected.notices  # none sent twice
