"""End-to-end latency: an item appears in a locally served feed → the SMTP server accepts
the notice, through every stage and the embedded Kafka broker, with an auto-confirming
playbook. The poll interval is excluded (the bench triggers each poll as soon as the item
appears); poll→publish and publish→SMTP are reported separately."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from email import message_from_bytes
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from aiosmtpd.controller import Controller

from bench.fixtures import playbooks_dir
from prevent.cli.services import running_system
from prevent.contracts import GlobalIncident, utcnow
from prevent.feeds.catalog import FeedConfig
from prevent.feeds.websub import sign
from prevent.partners.registry import apply_registry, parse_registry
from prevent.platform.config import Settings
from prevent.platform.netutil import free_port
from prevent.platform.storage.tables import WebSubSubscription
from prevent.web.app import create_app

AUTO_PLAYBOOK = {
    "id": "bench-auto", "title": "Bench: auto-confirmed mosque attack", "owner": "bench",
    "match": {"communities": {"any": ["muslim"]}, "incident_types": ["armed_attack"],
              "min_severity": 2, "max_age_hours": 72},
    "response": {"confirmation": {"mode": "auto"},
                 "notify": [{"communities": ["$matched"], "channels": ["email"]}]},
}
REGISTRY = {"zones": [{"zone_id": "z1", "name": "Zone 1"}],
            "sites": [{"site_id": "s1", "name": "Bench Mosque (sample)", "communities": ["muslim"],
                       "municipality": "Benchtown", "zone_id": "z1",
                       "contacts": [{"contact_id": "c1", "name": "Bench Contact",
                                     "email": "bench@example.org", "channels": ["email"],
                                     "consent": True}]}]}


REPO_PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"
ITEM_SPACING_SECONDS = 0.05  # 20 items/s: latency is measured below saturation


class Feed:
    """A feed whose items the bench adds; the newest 5 are served (a real feed is polled every
    few minutes, not every few milliseconds: re-parsing a long feed per item would measure CPU
    saturation, not latency)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server names it
                when = format_datetime(utcnow())
                items = "".join(f"<item><guid>{g}</guid><title>{t}</title><pubDate>{when}</pubDate>"
                                f"<description>{t}.</description></item>" for g, t in feed.items[-5:])
                body = (f'<?xml version="1.0"?><rss version="2.0"><channel><title>bench</title>'
                        f"{items}</channel></rss>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/feed.xml"


class TimedSink:
    def __init__(self) -> None:
        self.received: dict[int, float] = {}
        self._changed = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        sink = self

        class Handler:
            # aiosmtpd names it
            async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
                subject = str(message_from_bytes(envelope.content).get("Subject", ""))
                if match := re.search(r"evt(\d+)", subject):
                    sink.received.setdefault(int(match.group(1)), time.perf_counter())
                    if sink.loop is not None:  # the SMTP server runs on its own thread
                        sink.loop.call_soon_threadsafe(sink._changed.set)
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    async def wait_for(self, n: int, limit: float) -> None:
        self.loop = asyncio.get_running_loop()
        deadline = time.perf_counter() + limit
        while len(self.received) < n and (left := deadline - time.perf_counter()) > 0:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return


def title(i: int, rng: random.Random) -> str:
    # Unrelated words, so every item is its own event (its own cluster, alert and notice).
    noise = " ".join("".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=7)) for _ in range(12))
    return f"Gunmen kill 3 at mosque evt{i} {noise}"


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"n": len(values)}
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50_ms": q[49] * 1000, "p95_ms": q[94] * 1000, "p99_ms": q[98] * 1000,
            "max_ms": ordered[-1] * 1000, "n": len(ordered)}


async def measure(n: int, fetch_wait_ms: int | None, work: Path, *, push: bool = False,
                  bootstrap: str | None = None, semantic: bool = False,
                  spacing: float = ITEM_SPACING_SECONDS) -> dict[str, Any]:
    """``push=False``: the item appears in the feed and a poll is triggered at once.
    ``push=True``: the item is pushed to the console's WebSub callback, signed, as a hub would.
    ``fetch_wait_ms`` None: the engine's default. ``bootstrap``: an Apache Kafka cluster (its
    topics fresh); None: the embedded broker. ``semantic``: the semantic layer on (every item
    here alarms, so the model reads each one, in the preparation worker); a first item, not
    timed, waits until the worker has loaded the model and embedded the exemplars."""
    pb = playbooks_dir(work / "playbooks", n=0)
    (pb / "bench-auto.yaml").write_text(yaml.safe_dump(AUTO_PLAYBOOK))
    (work / "registry.yaml").write_text(yaml.safe_dump(REGISTRY))
    feed, sink, rng = Feed(), TimedSink(), random.Random(7)
    sink.controller.start()
    chosen = {} if fetch_wait_ms is None else {"kafka_fetch_max_wait_ms": fetch_wait_ms}
    if semantic:  # the exemplars sit beside the lexicons
        shutil.copytree(REPO_PLAYBOOKS / "exemplars", pb / "exemplars", dirs_exist_ok=True)
    settings = Settings(var_dir=work / "var", playbooks_dir=pb, demo=False, secret_key="bench",
                        smtp_port=sink.port, allow_private_addresses=True, kafka_bootstrap=bootstrap,
                        semantic=semantic, **chosen)
    feeds = [FeedConfig(id="bench", url=feed.url, kind="rss", interval_seconds=3600)]
    appeared: dict[int, float] = {}
    polled: dict[int, float] = {}
    published: dict[int, float] = {}
    try:
        async with running_system(settings, feeds=feeds, demo=False) as system:
            fetch_wait_ms = system.ctx.settings.kafka_fetch_max_wait_ms  # what the engine chose
            async with system.ctx.db.transaction() as session:
                await apply_registry(session, parse_registry(work / "registry.yaml"))
            watcher = system.watcher
            original = watcher.publish

            async def timed_publish(incident: GlobalIncident) -> None:
                await original(incident)
                if match := re.search(r"evt(\d+)", incident.title):
                    published[int(match.group(1))] = time.perf_counter()

            watcher.publish = timed_publish
            pusher = await WebSubPusher.start(system) if push else None
            await asyncio.sleep(1)
            if semantic:  # not timed: the worker loads the model and embeds the exemplars first
                warm_up = 10**6
                feed.items.append((f"g{warm_up}", title(warm_up, rng)))
                started = time.perf_counter()
                await watcher.poll("bench")
                await sink.wait_for(1, limit=180)
                warmed_s = time.perf_counter() - started
                sink.received.pop(warm_up, None)
                published.pop(warm_up, None)
            try:
                for i in range(n):
                    feed.items.append((f"g{i}", title(i, rng)))
                    appeared[i] = polled[i] = time.perf_counter()
                    if pusher:
                        await pusher.push(feed.items[-1])
                    else:
                        await watcher.poll("bench")
                    await asyncio.sleep(spacing)
                await sink.wait_for(n, limit=60)
            finally:
                if pusher:
                    await pusher.stop()
    finally:
        sink.controller.stop()
        feed.server.shutdown()
    done = [i for i in range(n) if i in sink.received and i in published]
    return {
        "path": "websub push" if push else "poll", "semantic": semantic, "items_per_s": round(1 / spacing, 1),
        **({"first_item_s": round(warmed_s, 1)} if semantic else {}),
        "fetch_max_wait_ms": fetch_wait_ms, "incidents": n, "delivered": len(sink.received),
        "poll_to_publish": percentiles([published[i] - polled[i] for i in done]),
        "publish_to_smtp": percentiles([sink.received[i] - published[i] for i in done]),
        "poll_to_smtp": percentiles([sink.received[i] - polled[i] for i in done]),
    }


async def run(n: int = 500) -> dict[str, Any]:
    results = {}
    for push in (False, True):
        for wait_ms in (500, 10):
            with tempfile.TemporaryDirectory() as tmp:
                name = f"{'push' if push else 'poll'}_fetch_wait_{wait_ms}ms"
                results[name] = await measure(n, wait_ms, Path(tmp), push=push)
    return results


SEMANTIC_SPACING_SECONDS = 0.5  # 2 items/s, every one read by the model: below its saturation


async def run_semantic(n: int = 120) -> dict[str, Any]:
    """Item -> proposed alert (here: the notice of an auto-confirming playbook, accepted by
    SMTP) with the semantic layer on: the poll path at both consumer fetch waits. Every item
    here alarms, so the model reads each one (one thread, in the preparation worker: about
    0.1-0.2 s for these titles and ledes); items arrive at 2 a second, below that
    saturation (at the 20 a second of ``run`` the worker's queue would only grow)."""
    results = {}
    for wait_ms in (500, 10):
        with tempfile.TemporaryDirectory() as tmp:
            name = f"poll_fetch_wait_{wait_ms}ms_semantic"
            results[name] = await measure(n, wait_ms, Path(tmp), semantic=True,
                                          spacing=SEMANTIC_SPACING_SECONDS)
    return results


class WebSubPusher:
    """The console's WebSub callback served by uvicorn in this process, and a signed POST per
    item, as a hub delivers it (one-item feed bodies)."""

    SECRET = "bench-websub-secret"

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], url: str) -> None:
        self.server, self.task, self.url = server, task, url
        self.client = httpx.AsyncClient(timeout=10)

    @classmethod
    async def start(cls, system: Any) -> WebSubPusher:
        now = utcnow()
        async with system.ctx.db.transaction() as session:
            session.add(WebSubSubscription(
                feed_id="bench", callback_id="bench-callback", hub_url="http://hub.invalid/",
                topic="http://bench.invalid/feed.xml", secret=cls.SECRET, state="active",
                requested_at=now, verified_at=now, expires_at=now + timedelta(days=1), pushes=0))

        @asynccontextmanager
        async def state(_app: object) -> AsyncIterator[Any]:
            yield system.console_state()

        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(state), host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="on"))
        task = asyncio.create_task(server.serve())
        for _ in range(200):  # uvicorn offers no startup event; give it up to 10 s
            if server.started:
                break
            await asyncio.sleep(0.05)
        return cls(server, task, f"http://127.0.0.1:{port}/websub/bench-callback")

    async def push(self, item: tuple[str, str]) -> None:
        guid, text = item
        when = format_datetime(utcnow())
        body = (f'<?xml version="1.0"?><rss version="2.0"><channel><title>bench</title><item>'
                f"<guid>{guid}</guid><title>{text}</title><pubDate>{when}</pubDate>"
                f"<description>{text}.</description></item></channel></rss>").encode()
        response = await self.client.post(self.url, content=body, headers={
            "Content-Type": "application/rss+xml", "X-Hub-Signature": sign(self.SECRET, body)})
        response.raise_for_status()

    async def stop(self) -> None:
        await self.client.aclose()
        self.server.should_exit = True
        await self.task


if __name__ == "__main__":
    import json
    import logging
    import sys

    logging.basicConfig(level=logging.WARNING)
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main = run_semantic if "--semantic" in sys.argv else run  # python -m bench.latency [N] [--semantic]
    print(json.dumps(asyncio.run(main(*(int(a) for a in args[:1]))), indent=2))
