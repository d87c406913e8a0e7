"""The rules consumer's pipeline: a batch is prepared (in a worker process) while the one
before it is written, and a batch's offsets are committed only once its incidents are
stored. The Kafka side is a recording stand-in here; the real broker runs in the
end-to-end and resilience suites."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from sqlalchemy import func, select

from consumers.rules import RulesConsumer
from prevent.classification import Classifier
from prevent.contracts import GlobalIncident, stable_id
from prevent.platform.runtime import PlaybookHolder
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import IncidentRow
from prevent.rules.playbooks.evaluate import CompiledSet
from prevent.rules.playbooks.loader import load_directory
from prevent.rules.pool import MIN_WORKER_BATCH, PART, RESULT_PIPE_BYTES, Preparer
from prevent.rules.stage import prepare

REPO = Path(__file__).resolve().parent.parent
PLAYBOOKS = REPO / "playbooks"
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
TITLES = ["Gunmen kill 3 at mosque in Kano, Nigeria", "Synagogue in Lyon set on fire overnight",
          "Church bombing in Lahore kills 12 worshippers", "Floods hit Dhaka, thousands displaced",
          "Football club wins the league", "Gurdwara vandalised with hate graffiti in Surrey"]


def incidents(n: int, start: int = 0) -> list[GlobalIncident]:
    out = []
    for i in range(start, start + n):
        title = f"{TITLES[i % len(TITLES)]} (report {i})"
        published = NOW + timedelta(seconds=i)
        out.append(GlobalIncident(incident_id=stable_id("inc", "t", str(i)), feed_id="t", kind="rss",
                                  title=title, summary="", published=published, first_seen=published,
                                  content_hash=stable_id("h", title)))
    return out


def records(items: list[GlobalIncident], first_offset: int, partition: int = 0) -> tuple[Any, ...]:
    return tuple(SimpleNamespace(topic="prevent.incidents.v1", partition=partition, offset=first_offset + n,
                                 key=i.incident_id.encode(), value=i.model_dump_json().encode())
                 for n, i in enumerate(items))


@dataclass
class RecordingConsumer:
    """What the handler does to the Kafka consumer, with the stored count at each commit."""

    db: Database
    commits: list[tuple[dict[TopicPartition, int], int]] = field(default_factory=list)
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)
    stored_at_commit: list[set[str]] = field(default_factory=list)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        async with self.db.transaction() as session:
            stored = set((await session.execute(select(IncidentRow.incident_id))).scalars())
        self.commits.append((dict(offsets), len(stored)))
        self.stored_at_commit.append(stored)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.from_dir(PLAYBOOKS)


@pytest.fixture
async def sqlite(tmp_path: Path) -> Any:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    await db.upgrade()
    yield db
    await db.dispose()


def rules_consumer(db: Database, classifier: Classifier, workers: int) -> RulesConsumer:
    holder = PlaybookHolder()
    holder.compiled = CompiledSet(load_directory(PLAYBOOKS))
    ctx = SimpleNamespace(settings=SimpleNamespace(max_message_bytes=1_000_000), db=db, broker=None,
                          relay=SimpleNamespace(kick=lambda: None), playbooks=holder, source="test")
    return RulesConsumer(ctx, classifier, Preparer(classifier, workers=workers))  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", [0, 1])
async def test_each_batch_is_committed_after_it_is_stored_and_in_order(sqlite, classifier, workers) -> None:
    consumer = rules_consumer(sqlite, classifier, workers)
    kafka = RecordingConsumer(sqlite)
    checkpoints: list[int] = []
    sqlite.checkpoint_soon = lambda: checkpoints.append(len(kafka.commits))  # type: ignore[method-assign]
    try:
        first, second = incidents(150), incidents(100, start=150)
        await consumer.handle_batch(records(first, 0), kafka)
        await consumer.handle_batch(records(second, 150), kafka)
        await consumer.drain()
    finally:
        consumer.preparer.close()
    # each stored batch asks for its pages to be checkpointed in the background
    assert len(checkpoints) == 2
    tp = TopicPartition("prevent.incidents.v1", 0)
    # Each commit names exactly its batch's next offset, in order, and the batch was stored
    # before it (the first commit may overlap the second batch's write).
    assert [offsets for offsets, _ in kafka.commits] == [{tp: 150}, {tp: 250}]
    assert {i.incident_id for i in first} <= kafka.stored_at_commit[0]
    assert {i.incident_id for i in first + second} == kafka.stored_at_commit[1]
    assert kafka.seeks == []


async def test_a_slow_offset_commit_holds_up_no_write_and_commits_stay_in_order(sqlite, classifier) -> None:
    consumer = rules_consumer(sqlite, classifier, 0)
    kafka = RecordingConsumer(sqlite)
    record = kafka.commit
    released = asyncio.Event()

    async def slow_first(offsets: dict[TopicPartition, int]) -> None:
        if not kafka.commits:
            await released.wait()  # the broker is slow to answer the first commit
        await record(offsets)

    kafka.commit = slow_first  # type: ignore[method-assign]
    first, second = incidents(5), incidents(5, start=5)
    await consumer.handle_batch(records(first, 0), kafka)
    # The second batch is written while the first commit waits (no deadlock, no wait).
    await asyncio.wait_for(consumer.handle_batch(records(second, 5), kafka), 10)
    await asyncio.wait_for(consumer.settle(), 10)
    async with sqlite.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(IncidentRow))).scalar() == 10
    assert kafka.commits == []
    released.set()
    await consumer.drain()
    tp = TopicPartition("prevent.incidents.v1", 0)
    assert [offsets for offsets, _ in kafka.commits] == [{tp: 5}, {tp: 10}]


async def test_the_offsets_of_each_partition_are_committed(sqlite, classifier) -> None:
    consumer = rules_consumer(sqlite, classifier, 0)
    kafka = RecordingConsumer(sqlite)
    batch = records(incidents(3), 40, partition=0) + records(incidents(2, start=3), 7, partition=2)
    await consumer.handle_batch(batch, kafka)
    await consumer.drain()
    assert kafka.commits == [({TopicPartition("prevent.incidents.v1", 0): 43,
                               TopicPartition("prevent.incidents.v1", 2): 9}, 5)]


async def test_a_batch_that_cannot_be_written_is_read_again_with_the_one_after_it(
        sqlite, classifier, monkeypatch) -> None:
    consumer = rules_consumer(sqlite, classifier, 0)
    kafka = RecordingConsumer(sqlite)

    async def broken(batch: Any) -> Any:
        raise RuntimeError("disk on fire")

    async def no_dead_letters(*args: Any) -> None:
        raise RuntimeError("broker away too")

    monkeypatch.setattr(consumer, "_process", broken)
    monkeypatch.setattr("consumers.rules.dead_letter", no_dead_letters)
    await consumer.handle_batch(records(incidents(5), 10), kafka)
    with pytest.raises(RuntimeError, match="broker away"):
        await consumer.handle_batch(records(incidents(5, start=5), 15), kafka)
    assert kafka.commits == []
    # Both batches read again from the first record of the failed one.
    assert kafka.seeks == [(TopicPartition("prevent.incidents.v1", 0), 10)]
    monkeypatch.undo()
    await consumer.handle_batch(records(incidents(10), 10), kafka)
    await consumer.drain()
    assert kafka.commits == [({TopicPartition("prevent.incidents.v1", 0): 20}, 10)]


async def test_the_worker_prepares_exactly_what_the_consumer_would(classifier) -> None:
    items = incidents(MIN_WORKER_BATCH * 2)
    preparer = Preparer(classifier, workers=1)
    try:
        from_worker = await preparer.start([i.model_dump_json().encode() for i in items], items).result()
    finally:
        preparer.close()
    here = [prepare(classifier, i) for i in items]
    assert from_worker == here
    assert any(p.classification.communities for p in here)


async def test_a_payload_serialised_otherwise_is_stored_as_the_stage_serialises_it(classifier) -> None:
    """The worker sends the payload back only when the record's bytes are not already the
    stage's own serialisation (another producer's key order or spacing)."""
    items = incidents(MIN_WORKER_BATCH)
    values = [orjson.dumps(orjson.loads(i.model_dump_json()), option=orjson.OPT_SORT_KEYS)
              if n % 2 else i.model_dump_json().encode() for n, i in enumerate(items)]
    assert values[1] != items[1].model_dump_json().encode()
    preparer = Preparer(classifier, workers=1)
    try:
        from_worker = await preparer.start(values, items).result()
    finally:
        preparer.close()
    assert [p.payload_json for p in from_worker] == [i.model_dump_json() for i in items]


def test_results_come_back_through_a_pipe_that_holds_whole_parts(classifier) -> None:
    fcntl = pytest.importorskip("fcntl")
    if not hasattr(fcntl, "F_GETPIPE_SZ"):
        pytest.skip("pipe sizes are set on Linux only")
    preparer = Preparer(classifier, workers=1)
    try:
        reader = preparer._pool._result_queue._reader  # type: ignore[union-attr]
        assert fcntl.fcntl(reader.fileno(), fcntl.F_GETPIPE_SZ) == RESULT_PIPE_BYTES
    finally:
        preparer.close()


async def test_a_dead_worker_costs_no_incident(classifier, caplog) -> None:
    items = incidents(MIN_WORKER_BATCH)
    values = [i.model_dump_json().encode() for i in items]
    preparer = Preparer(classifier, workers=1)
    try:
        await preparer.start(values, items).result()  # the worker is up
        pool = preparer._pool
        for process in list(pool._processes.values()):  # type: ignore[union-attr]
            os.kill(process.pid, signal.SIGKILL)
        await asyncio.sleep(0.5)
        assert await preparer.start(values, items).result() == [prepare(classifier, i) for i in items]
        assert "preparation worker failed" in caplog.text
        assert preparer._pool is not pool
        assert await preparer.start(values, items).result() == [prepare(classifier, i) for i in items]
    finally:
        preparer.close()


async def test_parts_a_busy_worker_has_not_started_are_prepared_here(classifier, monkeypatch) -> None:
    items = incidents(PART * 4)
    values = [i.model_dump_json().encode() for i in items]
    preparer = Preparer(classifier, workers=1)
    here: list[str] = []
    prepare_here = preparer.prepare_here

    def counted(part: list[GlobalIncident]) -> list[Any]:
        here.extend(i.incident_id for i in part)
        return prepare_here(part)

    monkeypatch.setattr(preparer, "prepare_here", counted)
    try:
        assert preparer._pool is not None
        preparer._pool.submit(time.sleep, 2.0)  # the worker is busy elsewhere
        result = await preparer.start(values, items).result()
    finally:
        preparer.close()
    assert result == [prepare(classifier, i) for i in items]
    # The last part was taken back from the worker's queue and prepared here.
    assert set(here) >= {i.incident_id for i in items[-PART:]}


async def test_the_event_loop_gets_turns_while_a_large_batch_is_grouped_and_prepared_here(
        sqlite, classifier, monkeypatch) -> None:
    """A large batch's in-memory steps and the parts of it prepared here each run for tens of
    milliseconds without awaiting anything. The event loop must get turns in between, or the
    consumer cannot fetch the next batch and hand it to the (idle) worker meanwhile."""
    from prevent.rules import stage as rules

    items = incidents(rules.YIELD_EVERY * 3)
    stored: list[str] = []
    store = rules._Batch._store

    def counted_store(self: Any, incident: GlobalIncident, *args: Any) -> None:
        stored.append(incident.incident_id)
        store(self, incident, *args)

    monkeypatch.setattr(rules._Batch, "_store", counted_store)
    seen = await _counts_seen_by_another_task(stored, _process(sqlite, classifier, items))
    assert len(stored) == len(items)
    assert [n for n in seen if 0 < n < len(items)], seen

    preparer = Preparer(classifier, workers=1)
    here: list[str] = []
    prepare_here = preparer.prepare_here
    monkeypatch.setattr(preparer, "prepare_here", lambda part: here.extend(
        i.incident_id for i in part) or prepare_here(part))
    try:
        assert preparer._pool is not None
        preparer._pool.submit(time.sleep, 2.0)  # busy: the parts are prepared here
        batch = incidents(PART * 4)
        seen = await _counts_seen_by_another_task(here, preparer.start(
            [i.model_dump_json().encode() for i in batch], batch).result())
    finally:
        preparer.close()
    assert len(here) >= 2 * PART
    assert [n for n in seen if 0 < n < len(here)], seen


async def _process(db: Database, classifier: Classifier, items: list[GlobalIncident]) -> None:
    from prevent.rules.stage import process_batch

    async with db.transaction() as session:
        await process_batch(session, items, classifier, CompiledSet(load_directory(PLAYBOOKS)))


async def _counts_seen_by_another_task(done: list[str], work: Any) -> list[int]:
    """How far ``done`` had got each time another task got a turn while ``work`` ran."""
    seen: list[int] = []
    finished = False

    async def probe() -> None:
        while not finished:
            seen.append(len(done))
            await asyncio.sleep(0)

    task = asyncio.create_task(probe())
    try:
        await work
    finally:
        finished = True
        await task
    return seen


@pytest.mark.e2e
async def test_on_the_real_broker_exactly_the_stored_batches_are_committed(settings) -> None:
    """The consumer commits offsets itself (FastStream's ack is off for it): with the
    embedded broker, once every incident is stored, the group's committed offsets cover
    exactly what was published, partition by partition."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from consumers.rules import GROUP
    from prevent.cli.services import running_system
    from prevent.contracts import INCIDENTS

    items = incidents(300)
    async with running_system(settings, services=("rules",), feeds=[], demo=False) as system:
        producer = AIOKafkaProducer(bootstrap_servers=system.bootstrap, acks="all")
        await producer.start()
        try:
            for item in items:
                await producer.send_and_wait(INCIDENTS.name, item.model_dump_json().encode(),
                                             key=item.incident_id.encode())
        finally:
            await producer.stop()
        for _ in range(150):
            async with system.ctx.db.transaction() as session:
                if (await session.execute(select(func.count()).select_from(IncidentRow))).scalar() == 300:
                    break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the last batch's commit follows its transaction
        # What was published, partition by partition (the next offset after the last
        # record), read back from the topic; then what the consumer group committed.
        reader = AIOKafkaConsumer(INCIDENTS.name, bootstrap_servers=system.bootstrap, group_id=None,
                                  auto_offset_reset="earliest", fetch_max_wait_ms=50)
        await reader.start()
        published: dict[TopicPartition, int] = {}
        try:
            seen = 0
            while seen < 300:
                for tp, records in (await reader.getmany(timeout_ms=2000)).items():
                    seen += len(records)
                    published[tp] = max(published.get(tp, 0), records[-1].offset + 1)
        finally:
            await reader.stop()
        group = AIOKafkaConsumer(bootstrap_servers=system.bootstrap, group_id=GROUP,
                                 enable_auto_commit=False)
        await group.start()
        try:
            committed = {tp: await group.committed(tp) for tp in published}
        finally:
            await group.stop()
    assert seen == 300
    assert committed == published


def test_a_worker_stops_when_its_consumer_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed consumer cannot stop its worker: the worker notices and exits."""
    import subprocess
    import sys

    script = tmp_path / "consumer.py"
    script.write_text(
        "import sys, time\n"
        "from pathlib import Path\n"
        "from prevent.classification import Classifier\n"
        "from prevent.rules.pool import Preparer\n"
        "if __name__ == '__main__':\n"
        "    preparer = Preparer(Classifier.from_dir(Path(sys.argv[1])), workers=1)\n"
        "    time.sleep(0.5)\n"
        "    print(*preparer._pool._processes, flush=True)\n"
        "    time.sleep(60)\n")
    # The with block closes the pipe and reaps the consumer.
    with subprocess.Popen([sys.executable, str(script), str(PLAYBOOKS)], stdout=subprocess.PIPE,
                          text=True) as consumer:
        try:
            workers = [int(pid) for pid in consumer.stdout.readline().split()]  # type: ignore[union-attr]
            assert len(workers) == 1 and _running(workers[0])
        finally:
            consumer.kill()
    deadline = time.monotonic() + 10
    while _running(workers[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(workers[0])


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.parametrize("fetch_wait_ms", [10, 50])
def test_an_idle_consumer_asks_again_within_the_fetch_wait(classifier, fetch_wait_ms) -> None:
    """FastStream's batch subscriber sleeps ``batch_timeout_ms`` after an empty fetch; left at
    its default (200 ms) that sleep, not the deployment's fetch wait, would bound how long the
    first report of an event waits."""
    from faststream.kafka import KafkaBroker

    from consumers.rules import register
    from prevent.contracts import INCIDENTS
    from prevent.platform.config import Settings

    broker = KafkaBroker("127.0.0.1:9")
    ctx = SimpleNamespace(settings=Settings(kafka_fetch_max_wait_ms=fetch_wait_ms, rules_workers=0),
                          broker=broker, on_stop=[])
    register(ctx, classifier)  # type: ignore[arg-type]
    [incidents_subscriber] = [s for s in broker.subscribers
                              if [t.name for t in s.topics] == [INCIDENTS.name]]
    assert incidents_subscriber.batch_timeout_ms == fetch_wait_ms
