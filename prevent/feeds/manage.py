"""`prevent feeds list|add|remove|enable|disable|status`: the registry file as data.

Edits go through ``load_feeds``/``save_feeds`` (strict validation, atomic write). A
running watcher picks them up within a minute (it re-reads the file). ``enable`` also
clears an auto-disable recorded in the database, which is the "someone looked at it"
step that puts a failing feed back on the schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from prevent.feeds.catalog import FeedConfig, FeedRegistryError, load_feeds, save_feeds
from prevent.feeds.health import FeedHealth, feed_health
from prevent.platform.config import Settings
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import FeedState

__all__ = ["add_feed", "clear_auto_disable", "format_status", "registry_path", "remove_feed",
           "set_enabled", "status_rows"]


def registry_path(settings: Settings, given: Path | None) -> Path:
    path = given or settings.feeds_file
    if path is None:
        raise FeedRegistryError("feeds.yaml", "no feed registry: pass --file or set PREVENT_FEEDS_FILE")
    return Path(path)


def _load(path: Path, *, missing_ok: bool = False) -> list[FeedConfig]:
    if missing_ok and not path.exists():
        return []
    return load_feeds(path)


def add_feed(path: Path, feed: FeedConfig) -> None:
    feeds = _load(path, missing_ok=True)
    if any(f.id == feed.id for f in feeds):
        raise FeedRegistryError(path, f"a feed with id {feed.id!r} already exists", field="id")
    save_feeds(path, [*feeds, feed])


def _require(path: Path, feeds: Sequence[FeedConfig], feed_id: str) -> int:
    for index, feed in enumerate(feeds):
        if feed.id == feed_id:
            return index
    raise FeedRegistryError(path, f"no feed with id {feed_id!r}", field="id")


def remove_feed(path: Path, feed_id: str) -> None:
    feeds = _load(path)
    index = _require(path, feeds, feed_id)
    save_feeds(path, feeds[:index] + feeds[index + 1:])


def set_enabled(path: Path, feed_id: str, enabled: bool) -> None:
    feeds = _load(path)
    index = _require(path, feeds, feed_id)
    feeds[index] = feeds[index].model_copy(update={"enabled": enabled})
    save_feeds(path, feeds)


async def clear_auto_disable(db: Database, feed_id: str) -> str | None:
    """Forget an auto-disable and its error streak; returns the reason that was cleared."""
    async with db.transaction() as session:
        state = await session.get(FeedState, feed_id)
        if state is None or not state.disabled_reason:
            return None
        reason = state.disabled_reason
        state.disabled_reason, state.disabled_at = None, None
        state.consecutive_errors, state.next_poll_at = 0, None
        return reason


async def status_rows(settings: Settings, path: Path | None) -> list[FeedHealth]:
    feeds = _load(path, missing_ok=True) if path else []
    db = Database(settings.effective_database_url)
    try:
        await db.upgrade()
        return await feed_health(db, feeds)
    finally:
        await db.dispose()


def _when(dt: datetime | None) -> str:
    return f"{dt:%Y-%m-%d %H:%M:%S}Z" if dt else "-"


def format_status(rows: Sequence[FeedHealth]) -> str:
    """A human-readable block per feed (ids first, so `grep` finds a feed)."""
    if not rows:
        return "no feeds"
    out = []
    for r in rows:
        ratio = f"{r.not_modified_ratio:.0%}" if r.not_modified_ratio is not None else "-"
        out.append(f"{r.feed_id}  [{r.status}]  {r.url or '(not in the registry)'}")
        out.append(f"  last success {_when(r.last_success_at)}   next poll {_when(r.next_poll_at)}"
                   f"   items {r.items_emitted}   fetches {r.fetches}   304 {ratio}"
                   + (f"   websub {r.websub}" if r.websub else ""))
        if r.consecutive_errors or r.last_error:
            out.append(f"  last error {_when(r.last_error_at)} ({r.consecutive_errors} in a row): "
                       f"{r.last_error}")
        if r.disabled_reason:
            out.append(f"  {r.disabled_reason}  -> `prevent feeds enable {r.feed_id}`")
    return "\n".join(out)
