"""Fixtures for watcher tests: a real loopback HTTP server and watchers on a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from prevent.contracts import GlobalIncident
from prevent.feeds.catalog import FeedConfig
from prevent.feeds.fetch import Fetcher, new_client
from prevent.feeds.watcher import FeedWatcher, Publish
from prevent.feeds.websub import WebSub
from prevent.platform.config import Settings
from prevent.platform.storage.db import Database

from .server import FeedServer


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer().start()
    try:
        yield server
    finally:
        server.stop()


def watcher_settings(tmp_path: Any, **overrides: Any) -> Settings:
    base: dict[str, Any] = dict(
        var_dir=tmp_path / "var", allow_private_addresses=True,  # the test server is on loopback
        feed_min_interval_seconds=10, feed_max_interval_seconds=3600, feed_backoff_max_seconds=3600,
        feed_read_timeout_seconds=2.0, feed_total_timeout_seconds=3.0, feed_connect_timeout_seconds=2.0,
        public_base_url="http://127.0.0.1:9", secret_key="test-secret-key-not-for-production")
    return Settings(**{**base, **overrides})


@dataclass
class Collector:
    """A publish function that records what Kafka would have acknowledged."""

    published: list[GlobalIncident] = field(default_factory=list)

    async def __call__(self, incident: GlobalIncident) -> None:
        self.published.append(incident)

    @property
    def titles(self) -> list[str]:
        return [i.title for i in self.published]


@dataclass
class Rig:
    db: Database
    settings: Settings
    client: httpx.AsyncClient

    def watcher(self, feeds: list[FeedConfig], publish: Publish | None = None, *,
                websub: bool = False, **kwargs: Any) -> FeedWatcher:
        return FeedWatcher(feeds, self.db, Fetcher.from_settings(self.client, self.settings),
                           publish or Collector(), settings=self.settings,
                           websub=WebSub(self.db, self.client, self.settings) if websub else None,
                           publish_backoff=0.01, **kwargs)


@pytest.fixture
async def rig(db: Database, tmp_path: Any) -> AsyncIterator[Rig]:
    settings = watcher_settings(tmp_path)
    async with new_client(settings) as client:
        yield Rig(db, settings, client)


def rss_feed(feed_id: str, url: str, **kwargs: Any) -> FeedConfig:
    return FeedConfig(id=feed_id, url=url, kind="rss", interval_seconds=60, **kwargs)
