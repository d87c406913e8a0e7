"""The embedded Tansu broker and Apache Kafka side by side, in one run: end-to-end latency
(feed item polled → SMTP accepted, :mod:`bench.latency`) and the burst of incidents until
every one is stored (:mod:`bench.throughput`), each with the defaults `prevent` chooses for
the engine (docs/OPERATIONS.md, "Defaults by engine").

Apache Kafka is one KRaft node started here by ``scripts/kafka-cluster`` (jars from Maven
Central, cached in ``~/.cache/prevent-kafka``; 512 MB heap) for the whole comparison; every
measurement on it starts on fresh topics (the ``prevent.*`` topics, and with them the
groups' offsets, deleted first). Each measurement runs in a fresh interpreter
(:func:`bench.isolation.isolated`); the engines alternate, Tansu first. Without Java or
Maven Central the Apache Kafka column says why it is empty.

``python -m bench.engines [LATENCY_N] [BURST_N]`` runs the comparison alone and prints its
section of docs/PERFORMANCE.md (a quick check: ``python -m bench.engines 20 1000``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.isolation import isolated

REPO = Path(__file__).resolve().parent.parent
ENGINES = ("tansu", "kafka")


def _kafka_cluster() -> ModuleType:
    name = "prevent_scripts_kafka_cluster"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "kafka_cluster.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@contextmanager
def apache_kafka() -> Iterator[tuple[str | None, str]]:
    """``(bootstrap, description)`` of a started 1-node cluster, or ``(None, why not)``. Its
    JVM dies with this process (PDEATHSIG) and its directory is removed afterwards."""
    from prevent.platform.broker import _pdeathsig_preexec

    kc = _kafka_cluster()
    if shutil.which("java") is None:
        yield None, "java not found"
        return
    try:
        kc.fetch()
    except (kc.ClusterError, OSError, TimeoutError) as exc:
        yield None, f"fetching the jars failed: {exc}"
        return
    directory = Path(tempfile.mkdtemp(prefix="prevent-bench-kafka-"))
    cluster = None
    try:
        started = time.perf_counter()
        try:
            cluster = kc.Cluster.create(directory, 1)
            cluster.start(preexec=_pdeathsig_preexec())
        except kc.ClusterError as exc:
            failed: str | None = f"could not start: {exc}"
        else:
            failed = None
            asyncio.run(warm_up(cluster.bootstrap))
            print(f"bench: Apache Kafka {kc.KAFKA_VERSION} (1 node) on {cluster.bootstrap} in "
                  f"{time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
        if failed is not None:
            yield None, failed
        else:
            yield cluster.bootstrap, f"Apache Kafka {kc.KAFKA_VERSION}, 1 node (KRaft, {kc.HEAP} heap)"
    finally:
        if cluster is not None:
            cluster.stop(graceful=False)  # throw-away data
        shutil.rmtree(directory, ignore_errors=True)


async def warm_up(bootstrap: str, timeout_s: float = 60.0) -> None:
    """One consumer group joined once, so that the cluster's first group creates
    ``__consumer_offsets`` here and not during the first measurement (seconds of
    GroupCoordinatorNotAvailable)."""
    from aiokafka import AIOKafkaConsumer

    from prevent.platform.broker import ensure_topics

    await ensure_topics(bootstrap, {"bench.warmup": 1})
    consumer = AIOKafkaConsumer("bench.warmup", bootstrap_servers=bootstrap, group_id="bench-warmup")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not consumer.assignment() and time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=200)
    finally:
        await consumer.stop()


async def fresh_topics(bootstrap: str, timeout_s: float = 60.0) -> None:
    """Delete every ``prevent.*`` topic (and so the groups' offsets on them); the services
    create them again, with their configurations, when they start."""
    from aiokafka.admin import AIOKafkaAdminClient

    from prevent.platform.broker import split_bootstrap

    admin = AIOKafkaAdminClient(bootstrap_servers=split_bootstrap(bootstrap))
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith("prevent.")]
        if names:
            await admin.delete_topics(names, timeout_ms=int(timeout_s * 1000))
        deadline = time.monotonic() + timeout_s
        while [t for t in await admin.list_topics() if t.startswith("prevent.")]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics {names} still listed after deletion")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def latency(n: int, bootstrap: str | None) -> dict[str, Any]:
    """The poll path at the engine's default fetch wait (run in a fresh interpreter)."""
    from bench.latency import measure

    if bootstrap:
        await fresh_topics(bootstrap)
    with tempfile.TemporaryDirectory() as tmp:
        return await measure(n, None, Path(tmp), bootstrap=bootstrap)


async def burst(n: int, bootstrap: str | None) -> dict[str, Any]:
    """The burst until every incident is stored (run in a fresh interpreter)."""
    from bench.throughput import burst as run_burst

    if bootstrap:
        await fresh_topics(bootstrap)
    return await run_burst(n, bootstrap=bootstrap)


def run(latency_n: int = 500, burst_n: int = 20_000) -> dict[str, Any]:
    """Both measurements on both engines; ``{"kafka_unavailable": why}`` instead of the Kafka
    figures when Apache Kafka cannot run here."""
    out: dict[str, Any] = {"latency_n": latency_n, "burst_n": burst_n}
    with apache_kafka() as (bootstrap, description):
        out["kafka"] = description
        for what, fn, n in (("latency", "bench.engines.latency", latency_n),
                            ("burst", "bench.engines.burst", burst_n)):
            for engine in ENGINES:
                if engine == "kafka" and bootstrap is None:
                    continue
                started = time.perf_counter()
                out[f"{what}_{engine}"] = isolated(fn, n, bootstrap if engine == "kafka" else None)
                print(f"bench: {what} on {engine} in {time.perf_counter() - started:.0f}s",
                      file=sys.stderr, flush=True)
        if bootstrap is None:
            out["kafka_unavailable"] = description
    return out


def _lat(row: dict[str, Any] | None) -> str:
    if not row or "p50_ms" not in row:
        return f"n={(row or {}).get('n', 0)}"
    return (f"{row['p50_ms']:.0f} / {row['p95_ms']:.0f} / {row['p99_ms']:.0f} / {row['max_ms']:.0f} "
            f"(n={row['n']})")


def render(e: dict[str, Any] | None) -> list[str]:
    """The section of docs/PERFORMANCE.md."""
    if not e:
        return []
    kafka_name = "Apache Kafka (1 node)"
    lines = ["", "## Tansu and Apache Kafka side by side", "",
             "The same measurements on both engines in this run, one after the other (Tansu first), "
             "each with the defaults `prevent` chooses for it (docs/OPERATIONS.md, \"Defaults by "
             "engine\"): on Tansu a 50 ms fetch wait (it answers a waiting fetch only when the wait "
             "expires) and no idempotent producer; on Apache Kafka a 500 ms fetch wait (it answers as "
             "soon as data arrives) and the idempotent producer; `acks=all` on both. "
             f"{e.get('kafka', '')}, started by `scripts/kafka-cluster` on this machine: its JVM "
             "shares the cores with the services. Every Kafka measurement starts on fresh topics.", ""]
    if "kafka_unavailable" in e:
        lines += [f"Apache Kafka was not measured in this run: {e['kafka_unavailable']}.", ""]
    lt, lk = e.get("latency_tansu") or {}, e.get("latency_kafka") or {}
    bt, bk = e.get("burst_tansu") or {}, e.get("burst_kafka") or {}

    def burst_cell(b: dict[str, Any]) -> str:
        if not b:
            return "—"
        return (f"{b['seconds']:.1f} s, {b['per_second']:,.0f} incidents/s ({b['alerts']} alerts; "
                f"published in {b['publish_seconds']:.1f} s)")

    def cell(row: dict[str, Any], key: str) -> str:
        return _lat(row.get(key)) if row else "—"

    lines += [
        f"| what | Tansu (embedded) | {kafka_name} |",
        "|---|---|---|",
        f"| consumer fetch wait (the engine's default) | {lt.get('fetch_max_wait_ms', '—')} ms | "
        f"{lk.get('fetch_max_wait_ms', '—')} ms |",
        f"| latency, feed item polled → SMTP accepted, p50 / p95 / p99 / max ms, "
        f"{e['latency_n']} items | {cell(lt, 'poll_to_smtp')} | {cell(lk, 'poll_to_smtp')} |",
        f"| of which poll → publish acknowledged | {cell(lt, 'poll_to_publish')} | "
        f"{cell(lk, 'poll_to_publish')} |",
        f"| of which publish → SMTP accepted (3 Kafka hops) | {cell(lt, 'publish_to_smtp')} | "
        f"{cell(lk, 'publish_to_smtp')} |",
        f"| items delivered | {lt.get('delivered', '—')} of {e['latency_n']} | "
        f"{lk.get('delivered', '—')} of {e['latency_n']} |",
        f"| burst of {e['burst_n']:,} incidents until every one is stored | {burst_cell(bt)} | "
        f"{burst_cell(bk)} |",
    ]
    if bt and bk:
        lines.append(f"| burst, Apache Kafka against Tansu | | {bt['seconds'] / bk['seconds']:.2f}× "
                     "the rate |")
    return lines


if __name__ == "__main__":
    import json
    import logging

    logging.basicConfig(level=logging.ERROR)
    latency_n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    burst_n = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    results = run(latency_n, burst_n)
    print(json.dumps(results, indent=2))
    print("\n".join(render(results)))
