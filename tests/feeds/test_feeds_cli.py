"""`prevent feeds ...`: registry editing, status, and `check` printing exactly what the watcher emits."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import feedparser
import pytest
from typer.testing import CliRunner

from prevent.cli.main import app
from prevent.feeds.catalog import load_feeds
from prevent.feeds.fetch import Fetcher, new_client
from prevent.feeds.watcher import FeedWatcher
from prevent.platform.config import get_settings
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import FeedState

from .conftest import Collector, rss_feed, watcher_settings
from .server import FeedServer, rss

SHARED_FEEDS = Path(__file__).resolve().parents[3] / "shared" / "data" / "feeds"
runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PREVENT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PREVENT_FEEDS_FILE", str(tmp_path / "feeds.yaml"))
    monkeypatch.setenv("PREVENT_ALLOW_PRIVATE_ADDRESSES", "true")
    monkeypatch.setenv("PREVENT_CONFIG_FILE", str(tmp_path / "none.toml"))
    get_settings.cache_clear()
    yield tmp_path / "feeds.yaml"
    get_settings.cache_clear()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_add_list_disable_enable_remove(env: Path) -> None:
    assert invoke("feeds", "add", "wire", "https://wire.example.org/rss", "--interval", "120").exit_code == 0
    assert invoke("feeds", "add", "uk-threat", "https://example.org/threat", "--kind", "threat_level",
                  "--level-pattern", r"level is (\w+)").exit_code == 0
    duplicate = invoke("feeds", "add", "wire", "https://other.example.org/rss")
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    bad = invoke("feeds", "add", "Bad Id", "https://x.example.org/")
    assert bad.exit_code == 1 and "slug" in bad.output
    assert invoke("feeds", "disable", "wire").exit_code == 0
    listed = invoke("feeds", "list", "--json")
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [(r["id"], r["enabled"]) for r in rows] == [("wire", False), ("uk-threat", True)]
    assert invoke("feeds", "enable", "wire").exit_code == 0
    assert invoke("feeds", "remove", "uk-threat").exit_code == 0
    assert [(f.id, f.enabled, f.interval_seconds) for f in load_feeds(env)] == [("wire", True, 120)]
    missing = invoke("feeds", "remove", "nope")
    assert missing.exit_code == 1 and "no feed with id 'nope'" in missing.output


def test_status_shows_health_and_enable_clears_an_auto_disable(env: Path, tmp_path: Path) -> None:
    assert invoke("feeds", "add", "broken", "https://broken.example.org/rss").exit_code == 0
    reason = "auto-disabled: 12 consecutive errors; last error http_5xx: HTTP 500"

    async def seed() -> None:
        db = Database(get_settings().effective_database_url)
        await db.upgrade()
        async with db.transaction() as session:
            session.add(FeedState(feed_id="broken", consecutive_errors=12, errors=12, fetches=20,
                                  not_modified=5, items_emitted=3, bytes_fetched=100,
                                  disabled_reason=reason, last_error="http_5xx: HTTP 500"))
        await db.dispose()

    asyncio.run(seed())
    text = invoke("feeds", "status")
    assert text.exit_code == 0
    assert "broken  [auto-disabled]" in text.output and reason in text.output and "304 25%" in text.output
    row = json.loads(invoke("feeds", "status", "--json").output.splitlines()[0])
    assert row["status"] == "auto-disabled" and row["consecutive_errors"] == 12
    assert row["not_modified_ratio"] == 0.25
    enabled = invoke("feeds", "enable", "broken")
    assert "cleared: auto-disabled" in enabled.output
    row = json.loads(invoke("feeds", "status", "--json").output.splitlines()[0])
    assert row["status"] == "new"  # polled again on the next start, with a clean streak
    assert row["disabled_reason"] is None and row["consecutive_errors"] == 0


def test_check_prints_exactly_what_the_watcher_would_emit(env: Path, tmp_path: Path) -> None:
    server = FeedServer().start()
    body = rss(("c-1", "Mosque attacked"), ("c-2", "&lt;i&gt;Temple&lt;/i&gt; fire"), ("c-1", "Repeat"),
               ("c-3", ""), pub_date=None)
    server.routes["/c.xml"] = lambda req: (200, {}, body)
    try:
        result = invoke("feeds", "check", server.url("/c.xml"), "--json")
        lines = [json.loads(line) for line in result.stdout.splitlines()]

        async def watch() -> list:
            settings = watcher_settings(tmp_path)
            db = Database(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
            await db.upgrade()
            out = Collector()
            async with new_client(settings) as client:
                # check names a URL's feed after its file name: "c"
                watcher = FeedWatcher([rss_feed("c", server.url("/c.xml"))], db,
                                      Fetcher.from_settings(client, settings), out, settings=settings)
                await watcher.poll("c")
            await db.dispose()
            return out.published

        published = asyncio.run(watch())
    finally:
        server.stop()
    assert result.exit_code == 0
    assert [(x["incident_id"], x["title"], x["content_hash"]) for x in lines] == [
        (i.incident_id, i.title, i.content_hash) for i in published]
    # HTML stripped; an empty title falls back to the summary's first words.
    assert [x["title"] for x in lines] == ["Mosque attacked", "Temple fire", "About c-3."]
    assert "duplicate" in result.stderr and "skipped" in result.stderr


@pytest.mark.skipif(not SHARED_FEEDS.is_dir(), reason=f"{SHARED_FEEDS} not present")
@pytest.mark.parametrize("path", sorted(p for p in SHARED_FEEDS.rglob("*") if p.is_file())
                         if SHARED_FEEDS.is_dir() else [], ids=lambda p: p.name)
def test_check_on_every_shared_feed(env: Path, path: Path) -> None:
    result = invoke("feeds", "check", str(path), "--json")
    assert "Traceback" not in result.output
    if "malformed" in path.name:  # no item survives: one clear line, exit 1
        assert result.exit_code == 1
        assert result.stderr.startswith("error: ") and path.name in result.stderr
        return
    assert result.exit_code == 0, result.output
    incidents = [json.loads(line) for line in result.stdout.splitlines()]
    readable = [e for e in feedparser.parse(path.read_bytes()).entries if e.get("title") or e.get("summary")]
    assert incidents, "every shared feed except the malformed one has entries"
    assert len(incidents) >= len(readable)
    for incident in incidents:
        assert incident["title"].strip()
        assert incident["published"].endswith(("Z", "+00:00"))
