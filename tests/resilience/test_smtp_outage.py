"""The SMTP server refuses connections for 30 seconds in the middle of a fan-out, then comes
back on the same port: every notice is delivered afterwards, none twice, none failed.

`prevent rules` and `prevent centre-notifier` run as real processes; the notifier holds the
partition and retries with backoff while the server is down (nothing committed). On both
engines: an embedded broker of its own, and the session's Apache Kafka with fresh topics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fixtures.broker import TEST_TOPICS
from fixtures.kafka import Engine, engine_broker, session_timeout_ms

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

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]
OUTAGE_S = 30.0


async def test_smtp_refuses_connections_for_30s_then_every_notice_goes_out_once(
        tmp_path: Path, system_engine: Engine) -> None:
    items = incidents(100, events=5, reports=4, seed=3)
    expected = await expected_outcome(items, tmp_path)
    assert expected.notices == 50
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    db = Database(db_url)
    await prepare(db)
    sink = Sink(delay=0.05).accept()
    services = Services(service_env("", db_url, sink.port, tmp_path / "var",
                                    session_timeout_ms=session_timeout_ms(system_engine)), tmp_path)
    try:
        async with engine_broker(system_engine, TEST_TOPICS) as bootstrap:
            services.env["PREVENT_KAFKA_BOOTSTRAP"] = bootstrap
            await start_rules_and_centre(services)
            await produce(bootstrap, items, chunk=50, pause=0)

            async def some_sent() -> bool:
                return len(sink.messages) >= 5

            await wait(some_sent, 60, "the first notices", services.assert_alive)
            sink.refuse()
            before = len(sink.messages)
            await asyncio.sleep(OUTAGE_S)
            _, rows, _ = await observed(db)
            assert len(sink.messages) == before
            assert "failed" not in {r.state for r in rows}, "an outage must not fail a notice"
            assert "SMTP server 127.0.0.1" in services.log("centre")  # it did try, and waits
            sink.accept()

            async def all_sent() -> bool:
                _, rows, _ = await observed(db)
                return len(rows) == expected.notices and all(r.state == "sent" for r in rows)

            await wait(all_sent, 75, "every notice after the SMTP server came back", services.assert_alive)
            await asyncio.sleep(1.5)  # would anything more arrive?
            services.stop_all()
    finally:
        services.stop_all()
        sink.refuse()
        _, rows, _ = await observed(db)
        await db.dispose()

    assert before < expected.notices, "the outage must start mid fan-out"
    ids = sink.message_ids()
    assert set(ids) == {f"<{r.notice_id}@example.org>" for r in rows}  # every notice
    print(f"{system_engine.name}: {before} of {expected.notices} notices sent before the outage, "
          f"{len(sink.messages)} messages in all, {len(ids)} distinct Message-IDs")
    assert len(sink.messages) == expected.notices  # none twice
