"""WebSub end to end on real sockets: a tiny hub of our own, the console's callback routes
under uvicorn, and the watcher's dedupe-and-publish path."""

from __future__ import annotations

import asyncio
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from prevent.contracts import GlobalIncident, utcnow
from prevent.feeds.fetch import Fetcher, new_client
from prevent.feeds.watcher import FeedWatcher
from prevent.feeds.websub import WebSub, sign, valid_signature
from prevent.platform.netutil import free_port
from prevent.platform.storage.tables import WebSubSubscription
from prevent.web.app import ConsoleState, create_app

from .conftest import rss_feed, watcher_settings
from .server import FeedServer, Request, rss


@dataclass
class Hub:
    """Accepts subscriptions, verifies intent at the callback, and pushes signed content."""

    server: FeedServer
    subscriptions: list[dict[str, str]] = field(default_factory=list)
    verified: threading.Event = field(default_factory=threading.Event)
    challenge_echoed: list[bool] = field(default_factory=list)

    def route(self, req: Request):
        form = dict(parse_qsl(req.body.decode()))
        self.subscriptions.append(form)
        threading.Thread(target=self._verify, args=(form,), daemon=True).start()
        return 202, {}, b""

    def _verify(self, form: dict[str, str]) -> None:
        challenge = secrets.token_hex(8)
        query = urlencode({"hub.mode": form["hub.mode"], "hub.topic": form["hub.topic"],
                           "hub.challenge": challenge, "hub.lease_seconds": form["hub.lease_seconds"]})
        # S310: the callback URL is this test's own local server
        with urllib.request.urlopen(f"{form['hub.callback']}?{query}", timeout=5) as response:  # noqa: S310
            self.challenge_echoed.append(response.read().decode() == challenge)
        self.verified.set()

    def push(self, body: bytes, *, secret: str | None = None) -> int:
        form = self.subscriptions[-1]
        signature = sign(secret or form["hub.secret"], body, "sha1")
        # S310: the callback URL is this test's own local server
        callback = form["hub.callback"]
        request = urllib.request.Request(callback, data=body, method="POST", headers={  # noqa: S310
            "Content-Type": "application/rss+xml", "X-Hub-Signature": signature,
            "Link": f'<{form["hub.topic"]}>; rel="self"'})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code


@asynccontextmanager
async def console(state: ConsoleState, port: int) -> AsyncIterator[None]:
    @asynccontextmanager
    async def factory(_app: object) -> AsyncIterator[ConsoleState]:
        yield state

    server = uvicorn.Server(uvicorn.Config(create_app(factory), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
        if task.done():
            task.result()
    try:
        yield
    finally:
        server.should_exit = True
        await task


def hub_and_feed(feed_server: FeedServer, items: list[tuple[str, str]]) -> tuple[Hub, str]:
    """A hub and a feed advertising it; the feed serves ``items`` as they are at each fetch."""
    hub = Hub(feed_server)
    feed_server.routes["/hub"] = hub.route
    topic = feed_server.url("/feed.xml")
    atom = 'xmlns:atom="http://www.w3.org/2005/Atom"'
    head = (f'<atom:link {atom} rel="hub" href="{feed_server.url("/hub")}"/>'
            f'<atom:link {atom} rel="self" href="{topic}"/>')
    feed_server.routes["/feed.xml"] = lambda req: (200, {}, rss(*items, extra=head))
    return hub, topic


def recorder() -> tuple[list[GlobalIncident], asyncio.Event, Any]:
    """What the watcher publishes, and an event set at each publish."""
    published: list[GlobalIncident] = []
    arrived = asyncio.Event()

    async def publish(incident: GlobalIncident) -> None:
        published.append(incident)
        arrived.set()

    return published, arrived, publish


def test_signature_check() -> None:
    body = b"<feed/>"
    assert valid_signature("s3cret", body, sign("s3cret", body, "sha1"))
    assert valid_signature("s3cret", body, sign("s3cret", body, "sha256").upper().replace("SHA256", "sha256"))
    assert not valid_signature("s3cret", body + b" ", sign("s3cret", body))
    assert not valid_signature("other", body, sign("s3cret", body))
    assert not valid_signature("s3cret", body, None)
    assert not valid_signature("s3cret", body, "md5=abc")


async def test_subscribe_verify_push_and_reject_bad_signature(db, tmp_path, feed_server) -> None:
    port = free_port()
    settings = watcher_settings(tmp_path, public_base_url=f"http://127.0.0.1:{port}")
    hub, topic = hub_and_feed(feed_server, [("w-1", "Gurdwara appeal")])
    published, arrived, publish = recorder()

    async with new_client(settings) as client:
        websub = WebSub(db, client, settings)
        watcher = FeedWatcher([rss_feed("pushy", topic)], db, Fetcher.from_settings(client, settings),
                              publish, settings=settings, websub=websub)
        state = ConsoleState(db=db, settings=settings, websub=watcher.receive_push)
        async with console(state, port):
            first = await watcher.poll("pushy")
            assert first.published == 1
            assert await asyncio.to_thread(hub.verified.wait, 5)
            assert hub.challenge_echoed == [True]
            form = hub.subscriptions[0]
            assert form["hub.mode"] == "subscribe" and form["hub.topic"] == topic
            assert form["hub.callback"].startswith(f"http://127.0.0.1:{port}/websub/")
            assert int(form["hub.lease_seconds"]) == settings.websub_lease_seconds
            assert await websub.is_active("pushy")

            # Polling goes on, slower, as the fallback.
            assert (await watcher.poll("pushy")).next_in == 60 * settings.websub_poll_factor

            # A signed push is published within a second, through dedupe (w-1 is not re-sent).
            arrived.clear()
            pushed = rss(("w-1", "Gurdwara appeal"), ("w-2", "Vigil outside the mosque tonight"))
            status = await asyncio.to_thread(hub.push, pushed)
            assert status == 204
            await asyncio.wait_for(arrived.wait(), timeout=1.0)
            assert [i.title for i in published] == ["Gurdwara appeal", "Vigil outside the mosque tonight"]

            # A push with a bad signature is refused and never published.
            forged = rss(("w-3", "Forged: riot at the temple"))
            assert await asyncio.to_thread(hub.push, forged, secret="not-the-secret") == 403
            assert len(published) == 2

            # Verification is answered only for a pending subscription with that topic.
            async with httpx.AsyncClient() as plain:
                callback = form["hub.callback"]
                spoof = await plain.get(callback, params={"hub.mode": "subscribe", "hub.topic": topic,
                                                          "hub.challenge": "x"})
                other = await plain.get(callback, params={"hub.mode": "subscribe",
                                                          "hub.topic": "https://evil.example/",
                                                          "hub.challenge": "x"})
                assert (spoof.status_code, other.status_code) == (404, 404)

            # Leases are renewed before they expire, with the same secret.
            async with db.transaction() as session:
                sub = (await session.execute(select(WebSubSubscription))).scalar_one()
                sub.expires_at = utcnow() + timedelta(minutes=1)
            hub.verified.clear()
            assert await websub.renew_due() == 1
            assert await asyncio.to_thread(hub.verified.wait, 5)
            assert hub.subscriptions[-1]["hub.secret"] == form["hub.secret"]
            async with db.transaction() as session:
                sub = (await session.execute(select(WebSubSubscription))).scalar_one()
            assert sub.state == "active" and sub.expires_at > utcnow() + timedelta(days=1)
            assert sub.pushes == 1


async def test_a_push_to_a_console_without_the_watcher_is_polled_by_the_watcher(
        db, tmp_path, feed_server) -> None:
    """Production runs the console and the watcher apart: the console accepts the signed push
    (202) and leaves a note; the watcher's scan polls that feed within seconds, once."""
    port = free_port()
    settings = watcher_settings(tmp_path, public_base_url=f"http://127.0.0.1:{port}").model_copy(
        update={"websub_push_scan_seconds": 0.2})
    items = [("w-1", "Gurdwara appeal")]
    hub, topic = hub_and_feed(feed_server, items)
    published, arrived, publish = recorder()

    async with new_client(settings) as client:
        websub = WebSub(db, client, settings)
        watcher = FeedWatcher([rss_feed("pushy", topic)], db,
                              Fetcher.from_settings(client, settings), publish, settings=settings,
                              websub=websub, startup_spread=0)
        async with console(ConsoleState(db=db, settings=settings), port):  # no watcher here
            assert (await watcher.poll("pushy")).published == 1
            assert await asyncio.to_thread(hub.verified.wait, 5)
            assert await websub.is_active("pushy")
            assert await watcher.poll_pushed() == []  # nothing pushed yet

            items.append(("w-2", "Vigil outside the mosque tonight"))
            arrived.clear()
            status = await asyncio.to_thread(hub.push, rss(*items))
            assert status == 202 and published[-1].title == "Gurdwara appeal"  # not ingested here
            await watcher.start()  # its scan job polls the pushed feed
            try:
                await asyncio.wait_for(arrived.wait(), timeout=5.0)
            finally:
                await watcher.aclose()
            assert [i.title for i in published] == ["Gurdwara appeal", "Vigil outside the mosque tonight"]
            assert await watcher.poll_pushed() == []  # the note was taken once
            forged = await asyncio.to_thread(hub.push, rss(("w-3", "Forged")), secret="not-the-secret")
            assert forged == 403 and await watcher.poll_pushed() == []
    async with db.transaction() as session:
        sub = (await session.execute(select(WebSubSubscription))).scalar_one()
    assert sub.pushes == 1 and sub.push_pending_at is None


@pytest.mark.parametrize("base", ["http://127.0.0.1:8000", "http://localhost:8000"])
async def test_no_subscription_when_the_callback_is_not_reachable(db, tmp_path, base) -> None:
    settings = watcher_settings(tmp_path, public_base_url=base, allow_private_addresses=False)
    async with new_client(settings) as client:
        assert not WebSub(db, client, settings).enabled
