"""`PREVENT_KAFKA_BOOTSTRAP=host1:port,host2:port,host3:port prevent up` against a 3-node
Apache Kafka cluster (scripts/kafka-cluster: replication factor 3, min.insync.replicas 2);
killing the node named first in that list stops no service (issue 24, acceptance).

`prevent up` runs as a real subprocess, as an operator would start it against production
infrastructure (its own session, data directory, free port and database, PREVENT_DEMO=false,
a feeds file served by a local HTTP server, an SMTP server). The bootstrap list names first
the node that coordinates the rules group (as `test_kafka_faults.py` does). A first batch of
feed items flows to stored incidents; that node is SIGKILLed (by its recorded pid, via the
fixture); a second batch flows too, and 200 incidents published straight to Kafka through
the same list (20 attacks reported 5 times: alerts, emailed notices and patrol assignments, so both
notifiers have work after the kill). Afterwards every process of `prevent up` still runs, the console is
ready, the log shows no fatal error, every item is stored exactly once, every alert and notice
exists once (one Message-ID per notice), and SIGINT stops it cleanly (exit code 0).
Skips without Java or Maven Central, fails instead under PREVENT_REQUIRE_KAFKA=1.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from feeds.server import FeedServer, rss
from fixtures.broker import TEST_TOPICS
from fixtures.kafka import start_cluster
from sqlalchemy import select

from prevent.platform.broker import ensure_topics
from prevent.platform.config import Settings
from prevent.platform.netutil import free_port
from prevent.platform.runtime import topic_configs
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import AlertRow, IncidentRow

from .harness import Sink, expected_outcome, incidents, observed, prepare, produce
from .harness import wait_until as wait
from .test_kafka_faults import RULES_GROUP, coordinator_of
from .test_up_sigkill import counts

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
FEEDS = 4
PER_BATCH = 100  # items per feed and batch: 400 a batch
BATCH = FEEDS * PER_BATCH
# Published after the kill straight to prevent.incidents.v1 (as test_kafka_faults does): 20
# attacks reported 5 times among quiet news, so the notifiers have alerts to act on too.
GRAVE = 200
# What would mean a service stopped: an unhandled exception, or a FastStream subscriber or
# uvicorn giving up.
FATAL = re.compile(r"Traceback|CRITICAL|Unhandled|Application shutdown failed|"
                   r"Application startup failed|exited with|fatal", re.IGNORECASE)


def fatal_excerpts(output: str, after: int = 40) -> list[str]:
    """Each line of ``output`` that ``FATAL`` matches, with the lines before it (its log record)
    and after it (a traceback's frames and its exception), so a failure names its cause."""
    lines = output.splitlines()
    return ["\n".join(lines[max(0, i - 3):i + after]) for i, line in enumerate(lines) if FATAL.search(line)]


PATROLLED = re.compile(r"alert (\S+) r\d+: \d+ patrol assignments changed")


def items(feed: int, batch: int) -> list[tuple[str, str]]:
    return [(f"wire{feed}-batch{batch}-item{k}",
             f"Road resurfacing on Main Street, section {feed}-{batch}-{k}") for k in range(PER_BATCH)]


@pytest.fixture
def three_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A fresh 3-node cluster per test: each database parameter starts with three live nodes
    and empty topics (the test leaves one node dead)."""
    cluster = start_cluster(tmp_path_factory.mktemp("kafka-3nodes"), 3)
    try:
        yield cluster
    finally:
        cluster.stop(graceful=False)  # throw-away data: no controlled shutdown to wait for


def start_up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # Its own session: the cleanup reaches every process of `prevent up` and none of ours.
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "prevent", "up"], env=env, cwd=log.parent,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def group_pids(pgid: int) -> dict[int, str]:
    """Live processes of process group ``pgid`` (pid -> command line); zombies count as exited."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            found[int(proc.name)] = cmdline.strip()
    return found


async def test_up_with_a_bootstrap_list_survives_the_first_named_node_killed(
        three_nodes, tmp_path: Path, database_url: str) -> None:
    cluster = three_nodes
    # The rules group's coordinator, named first: the services' bootstrap node and the node
    # whose death forces the rules group to find a new coordinator. The topics exist with
    # prevent's configurations before, as `prevent up` would create them (it finds them).
    await ensure_topics(cluster.bootstrap, TEST_TOPICS, configs=topic_configs(Settings()))
    victim = await coordinator_of(cluster.bootstrap, RULES_GROUP)
    order = [victim] + [n.id for n in cluster.nodes if n.id != victim]
    bootstrap = ",".join(f"127.0.0.1:{cluster.node(n).port}" for n in order)

    # The playbooks and a registry (10 contacts reached by email): alerts raise notices.
    direct = incidents(GRAVE, seed=24)
    expected = await expected_outcome(direct, tmp_path)
    assert expected.incidents == GRAVE and expected.notices > 0
    db = Database(database_url)
    await prepare(db)

    batches = [0]  # the batches the feeds serve, growing

    def route(feed: int):
        def serve(_req: object) -> tuple[int, dict[str, str], bytes]:
            served = [item for b in batches for item in items(feed, b)]
            return 200, {"Content-Type": "application/rss+xml"}, rss(*served, title=f"Wire {feed}")
        return serve

    server = FeedServer()
    for f in range(FEEDS):
        server.routes[f"/feed/{f}.xml"] = route(f)
    server.start()
    feeds_file = tmp_path / "feeds.yaml"
    feeds_file.write_text("feeds:\n" + "".join(
        f"  - id: wire-{f}\n    url: {server.url(f'/feed/{f}.xml')}\n    kind: rss\n"
        f"    interval_seconds: 10\n    language: en\n" for f in range(FEEDS)))
    sink = Sink().accept()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREVENT_")}
    env |= {"PREVENT_KAFKA_BOOTSTRAP": bootstrap, "PREVENT_DATABASE_URL": database_url,
            "PREVENT_VAR_DIR": str(tmp_path / "var"), "PREVENT_HTTP_PORT": str(port),
            "PREVENT_DEMO": "false", "PREVENT_FEEDS_FILE": str(feeds_file),
            "PREVENT_ALLOW_PRIVATE_ADDRESSES": "true", "PREVENT_FEED_MIN_INTERVAL_SECONDS": "1",
            "PREVENT_SECRET_KEY": "up-kafka-bootstrap-test-secret",
            "PREVENT_SMTP_HOST": "127.0.0.1", "PREVENT_SMTP_PORT": str(sink.port),
            "PREVENT_CHANNEL_RATE_PER_SECOND": '{"email": 200, "sms": 5, "webhook": 10}',
            "PREVENT_CONFIG_FILE": str(tmp_path / "none.toml")}
    log = tmp_path / "up.log"
    up = start_up(env, log)
    try:
        def alive() -> None:
            assert up.poll() is None, f"prevent up exited: {log.read_text(errors='replace')[-3000:]}"

        async def running() -> bool:
            return "prevent is running" in log.read_text(errors="replace")

        await wait(running, 120, "prevent up to start", alive)
        processes = group_pids(up.pid)

        def stored(n: int):
            async def check() -> bool:
                return (await counts(db))[1] >= n
            return check

        started = time.monotonic()
        await wait(stored(BATCH), 120, f"the first batch's {BATCH} incidents", alive)
        first = await counts(db)
        first_s = time.monotonic() - started

        await asyncio.to_thread(cluster.kill, victim)
        assert victim not in cluster.running()
        batches.append(1)
        killed_at = time.monotonic()
        await produce(bootstrap, direct, chunk=50, pause=0.1)  # the same list, node 1 dead

        async def complete() -> bool:
            alerts, notices, count = await observed(db)
            return (count >= 2 * BATCH + GRAVE and alerts == expected.alerts
                    and len(notices) == expected.notices and all(n.state == "sent" for n in notices))

        await wait(stored(2 * BATCH + GRAVE), 180, "every incident after the kill", alive)
        stored_s = time.monotonic() - killed_at
        try:
            await wait(complete, 180, f"both batches' {2 * BATCH} incidents, the {GRAVE} "
                       "published and their alerts and notices", alive)
        except AssertionError as exc:
            alerts, notices, count = await observed(db)
            raise AssertionError(
                f"{exc}: {count} stored; alerts {sum(alerts.values())} of "
                f"{sum(expected.alerts.values())}; notices {Counter(n.state for n in notices)} of "
                f"{expected.notices}; log: {log.read_text(errors='replace')[-3000:]}") from exc
        second_s = time.monotonic() - killed_at

        async def actionable() -> set[str]:
            async with db.transaction() as session:
                return set((await session.execute(select(AlertRow.alert_id).where(
                    AlertRow.status.in_(("confirmed", "closed"))))).scalars())

        def patrolled() -> set[str]:
            return set(PATROLLED.findall(log.read_text(errors="replace")))

        async def patrols_done() -> bool:
            return await actionable() <= patrolled()

        await wait(patrols_done, 60, "the patrol notifier to handle every actionable alert", alive)
        await asyncio.sleep(3)  # would anything more arrive?
        seen, rows, ids = await counts(db)
        alerts, notices, _ = await observed(db)
        confirmed, handled = await actionable(), patrolled()
        async with db.transaction() as session:
            titles = Counter((await session.execute(select(IncidentRow.title))).scalars())
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as console:
            health, ready = await console.get("/healthz"), await console.get("/readyz")
        still = group_pids(up.pid)
        up.send_signal(signal.SIGINT)
        up.wait(60)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
        server.stop()
        sink.refuse()
        await db.dispose()

    output = log.read_text(errors="replace")
    message_ids = sink.message_ids()
    print(f"\n3-node Apache Kafka, bootstrap {bootstrap} (node {victim}, the rules group's "
          f"coordinator, first): first batch {first[1]}/{BATCH} incidents stored in "
          f"{first_s:.1f}s; node {victim} SIGKILLed; then {rows}/{2 * BATCH + GRAVE} stored "
          f"({ids} distinct ids; feed entries seen {seen}/{2 * BATCH}, {GRAVE} published "
          f"directly) {stored_s:.1f}s after the kill, alerts and notices done at {second_s:.1f}s; "
          f"alerts {sum(alerts.values())}/"
          f"{sum(expected.alerts.values())}, notices sent {sum(n.state == 'sent' for n in notices)}"
          f"/{expected.notices}, distinct Message-IDs {len(message_ids)}, resent "
          f"{sum(n - 1 for n in message_ids.values())}, alerts the patrol notifier handled "
          f"{len(confirmed & handled)}/{len(confirmed)}; processes of prevent up "
          f"{len(processes)} before, {len(still)} after; exit code {up.returncode}")
    assert first[1] == BATCH, f"more than the first batch before the kill: {first}"
    assert set(still) == set(processes), f"a process of prevent up exited: {processes} -> {still}"
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text  # database and Kafka reachable, one node down
    # The patrol notifier (its own group) handled every actionable alert after the kill too.
    assert confirmed and confirmed <= handled, f"alerts the patrol notifier missed: {confirmed - handled}"
    fatal = fatal_excerpts(output)
    assert not fatal, "\n\n".join(fatal[:5])
    served = Counter(t for b in (0, 1) for f in range(FEEDS) for _, t in items(f, b))
    served.update(i.title for i in direct)
    assert seen == 2 * BATCH  # every feed item published once
    assert rows == ids == 2 * BATCH + GRAVE
    assert alerts == expected.alerts
    assert len(notices) == expected.notices and {n.state for n in notices} == {"sent"}
    assert set(message_ids) == {f"<{n.notice_id}@example.org>" for n in notices}
    assert titles == served  # every item of both batches exactly once
    assert up.returncode == 0, output[-3000:]
