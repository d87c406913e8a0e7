"""Polling 2,000 locally served feeds (mostly unchanged, so 304) in one round, beside a
baseline that calls ``feedparser.parse(url)`` on each feed in turn (no conditional GET)."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import feedparser
import httpx

from prevent.contracts import GlobalIncident
from prevent.feeds.catalog import FeedConfig
from prevent.feeds.fetch import new_client
from prevent.feeds.watcher import FeedWatcher
from prevent.platform.config import Settings
from prevent.platform.netutil import free_port
from prevent.platform.storage.db import Database


@contextlib.contextmanager
def feed_server(n: int, changed_percent: int = 10) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.feed_server", str(port), str(n),
                             str(changed_percent)], cwd=Path(__file__).resolve().parent.parent)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{base}/feed/0.xml", timeout=1)
                break
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def watcher_round(base: str, n: int, work: Path) -> dict[str, Any]:
    settings = Settings(var_dir=work, allow_private_addresses=True, feed_per_host_concurrency=64,
                        feed_max_concurrency=64)
    db = Database(f"sqlite+aiosqlite:///{work / 'feeds.db'}")
    await db.upgrade()
    feeds = [FeedConfig(id=f"feed-{i}", url=f"{base}/feed/{i}.xml", kind="rss") for i in range(n)]
    published = 0

    async def publish(incident: GlobalIncident) -> None:
        nonlocal published
        published += 1

    try:
        async with new_client(settings) as client:
            watcher = FeedWatcher(feeds, db, client, publish, settings=settings)
            await watcher.poll_all()  # first round: every feed is new (200 + parse + publish)
            first_published = published
            await client.post(f"{base}/round")  # 10% of the feeds change
            wall, cpu = time.perf_counter(), cpu_seconds()
            outcomes = await watcher.poll_all()
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    finally:
        await db.dispose()
    errors = sum(1 for o in outcomes if getattr(o, "error", None))
    return {"feeds": n, "round_seconds": wall, "cpu_seconds": cpu, "errors": errors,
            "first_round_incidents": first_published, "round_incidents": published - first_published}


def baseline_round(base: str, n: int) -> dict[str, Any]:
    httpx.post(f"{base}/round")
    wall, cpu = time.perf_counter(), cpu_seconds()
    entries = sum(len(feedparser.parse(f"{base}/feed/{i}.xml").entries) for i in range(n))
    return {"feeds": n, "round_seconds": time.perf_counter() - wall, "cpu_seconds": cpu_seconds() - cpu,
            "entries": entries}


def run(n: int = 2000) -> dict[str, Any]:
    with feed_server(n) as base, tempfile.TemporaryDirectory() as tmp:
        ours = asyncio.run(watcher_round(base, n, Path(tmp)))
        baseline = baseline_round(base, n)
    return {"watcher": ours, "baseline_feedparser": baseline,
            "speedup_wall": baseline["round_seconds"] / ours["round_seconds"],
            "cpu_ratio": baseline["cpu_seconds"] / max(ours["cpu_seconds"], 1e-9)}


if __name__ == "__main__":
    import json

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000), indent=2))
