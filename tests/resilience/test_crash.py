"""SIGKILL the rules consumer and the centre notifier at random points while 1,000 incidents
flow; afterwards every expected alert exists exactly once and every recipient has exactly one
notice (one distinct Message-ID each), none missing.

The services are real `prevent rules` / `prevent centre-notifier` processes sharing one
database (a SQLite file always; also a fresh PostgreSQL database when PREVENT_TEST_DATABASE_URL
is set, where replicas serialise rules batches with an advisory lock) and one broker: an
embedded one started by the test, or the session's Apache Kafka. The expected outcome is the
same incidents run through `prevent.rules.stage.process_batch` on a fresh SQLite database.

* one replica of each: each is killed once and restarted (the dead notifier's send leases
  lapse at once rather than after 60 s: ``notify.helpers.lapse_claims_of_the_dead``);
* two replicas of each in their consumer groups: one of each is killed and not restarted,
  so its partitions move to the survivor (session timeout 2 s on the embedded broker, 6 s,
  the cluster's minimum, on Apache Kafka).

Both scenarios run on both engines (Tansu, and Apache Kafka with fresh topics). The
one-replica scenario runs on SQLite only; the two-replica one on both databases.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from pathlib import Path

import pytest
from fixtures.broker import TEST_TOPICS
from fixtures.kafka import Engine, engine_broker, session_timeout_ms
from notify.helpers import lapse_claims_of_the_dead

from prevent.platform.storage.db import Database

from .harness import Services, Sink, expected_outcome, incidents, observed, prepare, produce, service_env
from .harness import wait_until as wait

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]
log = logging.getLogger(__name__)
TOTAL = 1000


async def run_scenario(tmp_path: Path, db_url: str, *, replicas: int, seed: int,
                       engine: Engine = Engine("tansu", "")) -> None:
    rng = random.Random(seed)
    items = incidents(TOTAL, seed=seed)
    expected = await expected_outcome(items, tmp_path)
    assert expected.incidents == TOTAL and sum(expected.alerts.values()) == 20
    assert expected.notices == 200

    db = Database(db_url)
    await prepare(db)
    sink = Sink(delay=0.02).accept()
    kill_rules_at_chunk = rng.randrange(8, 24)  # of 40 chunks
    kill_centre_at_sent = rng.randrange(20, 150)  # of 200 messages
    log.warning("seed %d: kill rules at chunk %d, centre after %d sends", seed, kill_rules_at_chunk,
                kill_centre_at_sent)
    names = [f"{kind}-{n}" for kind in ("rules", "centre") for n in range(1, replicas + 1)]
    kills: dict[str, int] = {}
    unrecorded_at_kill: set[str] = set()
    try:
        async with engine_broker(engine, TEST_TOPICS) as bootstrap:
            services = Services(service_env(bootstrap, db_url, sink.port, tmp_path / "var",
                                            session_timeout_ms=session_timeout_ms(engine)),
                                tmp_path)
            for name in names:
                services.start(name, "rules" if name.startswith("rules") else "centre-notifier")

            async def all_running() -> bool:
                return all("prevent is running" in services.log(n) for n in names)

            await wait(all_running, 60, "the services to start", services.assert_alive)
            await asyncio.sleep(1.5)  # replicas: let the group settle so each owns partitions

            victim_rules, victim_centre = f"rules-{replicas}", f"centre-{replicas}"

            async def kill_rules(chunk: int) -> None:
                if chunk == kill_rules_at_chunk:
                    kills["rules"] = (await observed(db))[2]
                    services.kill(victim_rules)
                    if replicas == 1:
                        services.start("rules-restarted", "rules")

            async def kill_centre() -> None:
                while len(sink.messages) < kill_centre_at_sent:  # noqa: ASYNC110 - another thread appends
                    await asyncio.sleep(0.01)
                kills["centre"] = len(sink.messages)
                services.kill(victim_centre)
                await asyncio.sleep(0.3)  # the sink finishes a DATA the dead client had sent
                # Accepted by the SMTP server but not recorded sent: what a restart may resend.
                recorded = {f"<{n.notice_id}@example.org>" for n in (await observed(db))[1]
                            if n.state == "sent"}
                unrecorded_at_kill.update(set(sink.message_ids()) - recorded)
                if replicas == 1:  # no notifier runs now: every claim left is the dead one's
                    await lapse_claims_of_the_dead(db)
                    services.start("centre-restarted", "centre-notifier")

            killer = asyncio.create_task(kill_centre())
            await produce(bootstrap, items, chunk=25, pause=0.2, after_chunk=kill_rules)

            async def complete() -> bool:
                alerts, notices, count = await observed(db)
                return (killer.done() and count == TOTAL and alerts == expected.alerts
                        and len(notices) == expected.notices
                        and all(n.state == "sent" for n in notices))

            try:
                await wait(complete, 90, "every alert and notice after the kills", services.assert_alive)
            except AssertionError as exc:  # say what differs (two replicas racing, a lost notice...)
                alerts, notices, count = await observed(db)
                missing, extra = expected.alerts - alerts, alerts - expected.alerts
                raise AssertionError(
                    f"{exc}: {count}/{TOTAL} incidents; alerts missing {sum(missing.values())}, "
                    f"unexpected {sum(extra.values())}; notices {Counter(n.state for n in notices)} "
                    f"of {expected.notices}") from exc
            await asyncio.sleep(2)  # would anything more arrive?
            alerts, notices, count = await observed(db)
            services.stop_all()  # while the broker runs, so consumers leave cleanly
    finally:
        if "services" in locals():
            services.stop_all()
        sink.refuse()
        await db.dispose()

    assert 0 < kills["rules"] < TOTAL, "the rules consumer must die mid-stream"
    assert 0 < kills["centre"] < expected.notices, "the centre notifier must die mid fan-out"
    assert count == TOTAL
    assert alerts == expected.alerts  # every expected alert, each exactly once
    assert len(notices) == expected.notices and {n.state for n in notices} == {"sent"}
    ids = sink.message_ids()
    assert set(ids) == {f"<{n.notice_id}@example.org>" for n in notices}  # none missing
    # A resend after the kill carries the same Message-ID, and only a message the SMTP server
    # had accepted while the killed notifier had not recorded it is sent again (at-least-once).
    # How many such messages one process can leave is bounded by its channel's in-flight bound
    # (one email): the slot is held until the outcome is recorded (notifiers/centre.py; before
    # that, test_crash[kafka] once found two resent, one accepted and waiting to be recorded
    # while the next went out). The survivor's own unrecorded send, with two replicas, may be in
    # the snapshot too, so the snapshot may hold more than the bound, the resends may not.
    resent = {mid for mid, n in ids.items() if n > 1}
    print(f"{engine.name} {replicas} replica(s): centre notifier killed after {kills['centre']} "
          f"messages; accepted but unrecorded at the kill {len(unrecorded_at_kill)}; resent "
          f"{len(resent)}; incidents {count}/{TOTAL}; notices {len(notices)}/{expected.notices}, "
          f"{len(ids)} distinct Message-IDs")
    assert resent <= unrecorded_at_kill, "a message recorded sent before the kill was sent again"
    assert sum(n - 1 for n in ids.values()) <= 1
    # Exactly one notice per recipient and alert.
    assert len({(n.contact_id, n.alert_id) for n in notices}) == expected.notices


# SQLite only, to keep the suite short: on PostgreSQL the two-replica scenario covers the same
# kills (a centre notifier dies mid fan-out there too) and the replicas' advisory lock besides.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sigkill_rules_then_centre_notifier_while_incidents_flow(
        tmp_path: Path, database_url: str, system_engine: Engine) -> None:
    """On both engines: Tansu, and Apache Kafka (1 node, fresh topics)."""
    await run_scenario(tmp_path, database_url, replicas=1, seed=random.randrange(1_000_000),
                       engine=system_engine)


async def test_two_replicas_each_one_killed_partitions_move_to_the_survivor(
        tmp_path: Path, database_url: str, system_engine: Engine) -> None:
    """On both engines; on Apache Kafka the survivor takes over after its 6 s minimum session
    timeout instead of Tansu's 2 s."""
    await run_scenario(tmp_path, database_url, replicas=2, seed=random.randrange(1_000_000),
                       engine=system_engine)
