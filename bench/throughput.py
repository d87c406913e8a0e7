"""Rules-consumer throughput against the transport's limit, and the burst of a major event.

Both consumers read the same burst of incidents from the same embedded broker:
the pass-through consumer (aiokafka only: consume a batch, re-produce it, wait for
the acks, commit) measures what the transport allows; the real rules consumer
(50 playbooks, 500 partner sites, SQLite) is measured from the same burst.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select

from bench.fixtures import incidents, playbooks_dir, registry_file
from consumers.rules import BATCH_SIZE
from prevent import audit
from prevent.classification import Classifier
from prevent.cli.services import running_system
from prevent.contracts import INCIDENTS, GlobalIncident
from prevent.partners.registry import apply_registry, parse_registry
from prevent.platform.broker import EmbeddedBroker
from prevent.platform.config import Settings
from prevent.platform.runtime import settled_heap, topic_partitions
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import AlertRow
from prevent.rules import grouping
from prevent.rules import stage as rules
from prevent.rules.playbooks import store
from prevent.rules.playbooks.evaluate import CompiledSet
from prevent.rules.stage import process_batch


async def publish_burst(bootstrap: str, topic: str, items: list[GlobalIncident]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = [await producer.send(topic, i.model_dump_json().encode(), key=i.incident_id.encode())
                   for i in items]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def pass_through(bootstrap: str, source: str, sink: str, n: int, ready: asyncio.Event) -> float:
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=f"passthrough-{source}",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=50, session_timeout_ms=2000,
                                heartbeat_interval_ms=500)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    ready.set()
    done = 0
    started: float | None = None
    try:
        while done < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            if batches and started is None:
                started = time.perf_counter()
            futures = [await producer.send(sink, r.value, key=r.key)
                       for records in batches.values() for r in records]
            await asyncio.gather(*futures)
            await consumer.commit()
            done += len(futures)
        return time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()
        await producer.stop()


# Both consumers are given this long to join their group and settle before the burst, so
# that neither is measured joining.
JOIN_SECONDS = 2.5

# How often the incidents stored are counted. The counting runs in a thread with its own
# SQLite connection: counting through the service's engine cost about a millisecond of the
# consumer's own CPU per count (the pass-through's end is known exactly, at no cost).
STORED_POLL_SECONDS = 0.01


def watch_stored(database: Path, n: int, started: float, lag: list[tuple[float, int]]) -> float:
    """Seconds from ``started`` until ``n`` incidents are stored; the backlog, as it goes."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        while True:
            count = conn.execute("SELECT count(*) FROM incidents").fetchone()[0]
            now = time.perf_counter() - started
            lag.append((round(now, 2), n - count))
            if count >= n:
                return now
            time.sleep(STORED_POLL_SECONDS)
    finally:
        conn.close()


async def stored(system: Any, model: Any) -> int:
    async with system.ctx.db.transaction() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar()


async def run_rules(n: int, work: Path, *, lag_samples: list[tuple[float, int]] | None = None,
                    bootstrap: str | None = None) -> dict[str, float]:
    """``bootstrap``: an Apache Kafka cluster (its topics fresh); None: the embedded broker."""
    settings = Settings(var_dir=work / "var", playbooks_dir=playbooks_dir(work / "playbooks"),
                        demo=False, secret_key="bench", kafka_bootstrap=bootstrap)
    items = incidents(n, tag=f"rules-{n}")
    lag = lag_samples if lag_samples is not None else []
    async with running_system(settings, services=("rules",), feeds=[], demo=False) as system:
        async with system.ctx.db.transaction() as session:
            await apply_registry(session, parse_registry(registry_file(work / "sites.yaml")))
        await asyncio.sleep(JOIN_SECONDS)
        started = time.perf_counter()
        watcher = asyncio.create_task(asyncio.to_thread(
            watch_stored, settings.var_dir / "prevent.db", n, started, lag))
        publish_s = await publish_burst(system.bootstrap, INCIDENTS.name, items)
        elapsed = await watcher
        alerts = await stored(system, AlertRow)
    return {"incidents": n, "seconds": elapsed, "per_second": n / elapsed,
            "publish_seconds": publish_s, "alerts": alerts}


async def run_pass_through(n: int) -> dict[str, float]:
    topics = topic_partitions(Settings()) | {"bench.out": 3}
    async with EmbeddedBroker(topics=topics) as broker:
        ready = asyncio.Event()
        items = incidents(n, tag=f"pt-{n}")
        task = asyncio.create_task(pass_through(broker.bootstrap, INCIDENTS.name, "bench.out", n, ready))
        await ready.wait()
        await asyncio.sleep(JOIN_SECONDS)
        started = time.perf_counter()
        await publish_burst(broker.bootstrap, INCIDENTS.name, items)
        await task
        elapsed = time.perf_counter() - started
    return {"incidents": n, "seconds": elapsed, "per_second": n / elapsed}


async def run_stage(n: int, work: Path) -> dict[str, float]:
    """The rules stage alone, without Kafka: ``process_batch`` over the same kind of burst in
    the consumer's batch size, on the same database engine and with the same collector
    settings as a running service (``settled_heap``). What the consumer adds (fetch, decode,
    commit, the outbox relay publishing alert events) is the difference."""
    pdir = playbooks_dir(work / "playbooks")
    db = Database(f"sqlite+aiosqlite:///{work / 'stage.db'}")
    try:
        await db.upgrade()
        async with db.transaction() as session:
            await apply_registry(session, parse_registry(registry_file(work / "sites.yaml")))
            await store.apply_directory(session, pdir, author="bench")
        async with db.transaction() as session:
            compiled = CompiledSet(await store.current_set(session))
        classifier = Classifier.from_dir(pdir)
        items = incidents(n, tag=f"stage-{n}")
        with settled_heap():
            started = time.perf_counter()
            for start in range(0, n, BATCH_SIZE):
                async with db.transaction() as session:
                    await process_batch(session, items[start:start + BATCH_SIZE], classifier, compiled)
            elapsed = time.perf_counter() - started
    finally:
        await db.dispose()
    return {"incidents": n, "seconds": elapsed, "per_second": n / elapsed, "batch": BATCH_SIZE}


# The stage's steps, timed where the stage calls them (module attribute or method).
PHASES: dict[str, tuple[Any, str]] = {
    "preparation: classification, JSON encoding (the consumer's worker process does this)":
        (rules, "prepare"),
    "grouping: read clusters and key index": (grouping.Grouper, "load"),
    "grouping: assign reports": (grouping.Grouper, "assign"),
    "grouping: write clusters and keys": (grouping.Grouper, "flush"),
    "playbook matching": (CompiledSet, "matching"),
    "alert decisions (raise, attach, silence, inhibit)": (rules._Batch, "_raise_or_update"),
    "incident rows built": (rules._Batch, "_store"),
    "rows written (incidents, alerts, audit, outbox)": (audit.Staged, "flush"),
}


@contextmanager
def phase_clock(totals: dict[str, float]) -> Iterator[None]:
    """Time each of ``PHASES`` while the block runs (seconds, summed), then put them back."""
    originals = [(owner, name, getattr(owner, name)) for owner, name in PHASES.values()]

    def timed(label: str, fn: Any) -> Any:
        if inspect.iscoroutinefunction(fn):
            async def async_timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    totals[label] = totals.get(label, 0.0) + time.perf_counter() - started
            return async_timed

        def sync_timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - started
        return sync_timed

    try:
        for label, (owner, name) in PHASES.items():
            setattr(owner, name, timed(label, getattr(owner, name)))
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


async def stage_phases(n: int, work: Path) -> dict[str, Any]:
    """Where the stage's time goes: a second stage run with each step timed, in microseconds
    per incident; ``other`` is the rest (the batch's reads, the write lock, the commit)."""
    totals: dict[str, float] = {}
    with phase_clock(totals):
        run = await run_stage(n, work)
    per_incident = {label: totals.get(label, 0.0) * 1e6 / n for label in PHASES}
    total = run["seconds"] * 1e6 / n
    return {"incidents": n, "total_us": total, "phases_us": per_incident,
            "other_us": total - sum(per_incident.values())}


async def compare(n: int = 10_000, pairs: int = 4) -> dict[str, Any]:
    """The pass-through and the rules consumer, one after the other, ``pairs`` times (this
    machine's speed drifts within a run: each pair's ratio is what to compare), then the stage
    alone once."""
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(pairs):
            passthrough = await run_pass_through(n)
            rules = await run_rules(n, Path(tmp) / f"consumer-{i}")
            rounds.append({"pass_through": passthrough, "rules": rules,
                           "ratio": rules["per_second"] / passthrough["per_second"]})
        stage = await run_stage(n, Path(tmp) / "stage")
        phases = await stage_phases(n, Path(tmp) / "phases")
    return {"pairs": rounds, "median_ratio": statistics.median(r["ratio"] for r in rounds),
            "stage": stage,
            "stage_phases": phases}


async def burst(n: int = 20_000, bootstrap: str | None = None) -> dict[str, Any]:
    lag: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        result = await run_rules(n, Path(tmp), lag_samples=lag, bootstrap=bootstrap)
    step = max(1, len(lag) // 20)
    return result | {"lag_curve": lag[::step]}


if __name__ == "__main__":
    import json
    import logging

    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(compare(5000, pairs=1)), indent=2))
