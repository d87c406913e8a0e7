"""Feed metrics: rows for the console and /metrics in Prometheus text format."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx

from prevent.feeds.health import feed_health
from prevent.web.app import ConsoleState, create_app

from .conftest import Rig, rss_feed
from .server import FeedServer, Request, rss


async def test_rows_and_prometheus_exposition(rig: Rig, feed_server: FeedServer) -> None:
    def route(req: Request):
        if req.headers.get("if-none-match"):
            return 304, {}, b""
        return 200, {"ETag": '"x"'}, rss(("m-1", "Church fire"))

    feed_server.routes["/ok"] = route
    feed_server.routes["/bad"] = lambda req: (500, {}, b"")
    feeds = [rss_feed("ok", feed_server.url("/ok")), rss_feed("bad", feed_server.url("/bad"))]
    watcher = rig.watcher(feeds)
    await watcher.poll_all()
    await watcher.poll("ok")

    rows = {r.feed_id: r for r in await feed_health(rig.db, feeds)}
    ok, bad = rows["ok"], rows["bad"]
    assert (ok.fetches, ok.not_modified, ok.items_emitted, ok.not_modified_ratio) == (2, 1, 1, 0.5)
    assert ok.bytes_fetched > 0 and ok.last_duration_ms is not None and ok.status == "ok"
    assert (bad.status, bad.consecutive_errors, bad.last_error_kind) == ("failing", 1, "http_5xx")

    app = create_app(lambda _app: _never())
    app.state.console = ConsoleState(db=rig.db, settings=rig.settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'prevent_feed_fetches_total{feed_id="ok"} 2.0' in text
    assert 'prevent_feed_not_modified_ratio{feed_id="ok"} 0.5' in text
    assert 'prevent_feed_errors_total{feed_id="bad"} 1.0' in text
    assert "# TYPE prevent_feed_items_emitted_total counter" in text


@asynccontextmanager
async def _never():  # the lifespan is not run under ASGITransport
    yield None
