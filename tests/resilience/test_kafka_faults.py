"""Faults on a 3-node Apache Kafka cluster (scripts/kafka-cluster: replication factor 3,
min.insync.replicas 2), with exact counts.

Two `prevent rules` and two `prevent centre-notifier` replicas share one SQLite file and get
the bootstrap list with the rules group's coordinator named first. While 1,000 incidents
flow: that node is SIGKILLed (the group coordinator and the services' bootstrap node), then
one replica of each service is SIGKILLed and not restarted, then the node is restarted.
Afterwards every incident is stored once, every expected alert exists once and every notice
was sent once (one distinct Message-ID each; at most the notices in flight at the two
disruptions resent, with the same Message-ID). Skips without Java or Maven Central, fails
instead under PREVENT_REQUIRE_KAFKA=1.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from fixtures.broker import TEST_TOPICS
from fixtures.kafka import start_cluster

from prevent.platform.broker import ensure_topics
from prevent.platform.config import Settings
from prevent.platform.runtime import topic_configs
from prevent.platform.storage.db import Database

from .harness import Services, Sink, expected_outcome, incidents, observed, prepare, produce, service_env
from .harness import wait_until as wait

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
log = logging.getLogger(__name__)
TOTAL = 1000
RULES_GROUP = "prevent-rules"


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    cluster = start_cluster(tmp_path_factory.mktemp("kafka-3nodes"), 3)
    try:
        yield cluster
    finally:
        cluster.stop(graceful=False)  # throw-away data: no controlled shutdown to wait for


async def coordinator_of(bootstrap: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for _ in range(50):
            try:
                return int(await admin.find_coordinator(group))
            except Exception as exc:  # noqa: BLE001 - __consumer_offsets is being created
                log.info("coordinator not known yet: %r", exc)
                await asyncio.sleep(0.3)
        raise AssertionError(f"no coordinator for {group}")
    finally:
        await admin.close()


async def test_node_and_replicas_sigkilled_mid_burst_nothing_lost_nothing_twice(
        three_nodes, tmp_path: Path) -> None:
    cluster = three_nodes
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    items = incidents(TOTAL, seed=seed)
    expected = await expected_outcome(items, tmp_path)
    assert expected.incidents == TOTAL and expected.notices == 200

    await ensure_topics(cluster.bootstrap, TEST_TOPICS, configs=topic_configs(Settings()))
    victim_node = await coordinator_of(cluster.bootstrap, RULES_GROUP)
    order = [victim_node] + [n.id for n in cluster.nodes if n.id != victim_node]
    bootstrap = ",".join(f"127.0.0.1:{cluster.node(n).port}" for n in order)

    db_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    db = Database(db_url)
    await prepare(db)
    sink = Sink(delay=0.02).accept()
    kill_node_at, kill_replicas_at, restart_node_at = (rng.randrange(4, 10), rng.randrange(12, 20),
                                                       rng.randrange(24, 30))
    log.warning("seed %d: kill node %d (coordinator, first in %s) at chunk %d, replicas at %d, "
                "restart node at %d", seed, victim_node, bootstrap, kill_node_at,
                kill_replicas_at, restart_node_at)
    names = ["rules-1", "rules-2", "centre-1", "centre-2"]
    done: dict[str, int] = {}
    services = Services(service_env(bootstrap, db_url, sink.port, tmp_path / "var",
                                    session_timeout_ms=6000), tmp_path)
    try:
        for name in names:
            services.start(name, "rules" if name.startswith("rules") else "centre-notifier")

        async def all_running() -> bool:
            return all("prevent is running" in services.log(n) for n in names)

        await wait(all_running, 90, "the services to start", services.assert_alive)
        await asyncio.sleep(2)  # let both groups settle so each replica owns partitions

        async def faults(chunk: int) -> None:
            if chunk == kill_node_at:
                done["node_killed_at_incidents"] = (await observed(db))[2]
                await asyncio.to_thread(cluster.kill, victim_node)
            elif chunk == kill_replicas_at:
                done["replicas_killed_at_incidents"] = (await observed(db))[2]
                done["replicas_killed_at_sent"] = len(sink.messages)
                services.kill("rules-2")
                services.kill("centre-2")
            elif chunk == restart_node_at:
                await asyncio.to_thread(cluster.restart, victim_node)
                done["node_restarted"] = 1

        await produce(bootstrap, items, chunk=25, pause=0.2, after_chunk=faults)

        async def complete() -> bool:
            alerts, notices, count = await observed(db)
            return (count == TOTAL and alerts == expected.alerts
                    and len(notices) == expected.notices and all(n.state == "sent" for n in notices))

        try:
            await wait(complete, 180, "every incident, alert and notice after the faults",
                       services.assert_alive)
        except AssertionError as exc:
            alerts, notices, count = await observed(db)
            raise AssertionError(
                f"{exc}: {count}/{TOTAL} incidents; alerts {sum(alerts.values())} of "
                f"{sum(expected.alerts.values())}; notices {Counter(n.state for n in notices)} of "
                f"{expected.notices}; faults {done}") from exc
        await asyncio.sleep(2)  # would anything more arrive?
        alerts, notices, count = await observed(db)
        services.stop_all()
    finally:
        services.stop_all()
        sink.refuse()
        await db.dispose()

    ids = sink.message_ids()
    print(f"\n3-node Apache Kafka, node {victim_node} (coordinator, bootstrap first) killed at "
          f"{done.get('node_killed_at_incidents')} incidents, a rules and a centre replica at "
          f"{done.get('replicas_killed_at_incidents')}: incidents {count}/{TOTAL}, alerts "
          f"{sum(alerts.values())}/{sum(expected.alerts.values())}, notices sent "
          f"{sum(n.state == 'sent' for n in notices)}/{expected.notices}, distinct Message-IDs "
          f"{len(ids)}, resent {sum(n - 1 for n in ids.values())}")
    assert done.get("node_restarted") == 1 and cluster.running() == [1, 2, 3]
    assert count == TOTAL
    assert alerts == expected.alerts
    assert len(notices) == expected.notices and {n.state for n in notices} == {"sent"}
    assert set(ids) == {f"<{n.notice_id}@example.org>" for n in notices}
    # A resend carries the same Message-ID, and only a notice whose send was interrupted is
    # sent again: at most one for the killed centre replica and one for the rebalance that
    # follows the coordinator's death (2 resends seen in a run).
    assert sum(n - 1 for n in ids.values()) <= 2
    assert len({(n.contact_id, n.alert_id) for n in notices}) == expected.notices
