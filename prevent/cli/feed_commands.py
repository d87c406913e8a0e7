"""The `prevent feeds ...` registry and health commands (``check`` lives in prevent/cli/main.py).

Registered on the CLI's ``feeds`` group by :func:`register`, so the CLI module stays a
list of entry points.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from prevent.contracts import FeedKind
from prevent.feeds import manage as admin
from prevent.feeds.catalog import FeedConfig, FeedRegistryError
from prevent.platform.config import get_settings

FileOption = Annotated[Path | None, typer.Option(
    "--file", "-f", help="the feeds.yaml to edit [PREVENT_FEEDS_FILE]")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@contextmanager
def _registry_errors() -> Iterator[None]:
    """A registry problem is one clear line and exit code 1, never a traceback."""
    try:
        yield
    except FeedRegistryError as exc:
        raise _fail(str(exc)) from exc


def _path(file: Path | None) -> Path:
    with _registry_errors():
        return admin.registry_path(get_settings(), file)


def feeds_list(file: FileOption = None,
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the feeds in the registry."""
    path = _path(file)
    with _registry_errors():
        feeds = admin._load(path)  # same package
    for feed in feeds:
        if as_json:
            typer.echo(feed.model_dump_json())
        else:
            state = "enabled " if feed.enabled else "disabled"
            typer.echo(f"{feed.id:<32} {state} {feed.kind.value:<12} every {feed.interval_seconds}s  "
                       f"{feed.url}")


def feeds_add(
    feed_id: Annotated[str, typer.Argument(metavar="ID", help="slug, e.g. bbc-world")],
    url: Annotated[str, typer.Argument(help="http(s) URL or file: path")],
    kind: Annotated[FeedKind, typer.Option(help="feed format")] = FeedKind.RSS,
    interval: Annotated[int, typer.Option(help="seconds between polls")] = 300,
    language: str | None = None, country: str | None = None, region: str | None = None,
    trust_weight: float = 1.0,
    level_pattern: Annotated[str | None, typer.Option(
        help="threat_level only: regex whose one group is the level")] = None,
    disabled: bool = False, file: FileOption = None,
) -> None:
    """Add a feed to the registry (validated like the file itself)."""
    path = _path(file)
    try:
        feed = FeedConfig(id=feed_id, url=url, kind=kind, interval_seconds=interval, language=language,
                          country=country, region=region, trust_weight=trust_weight,
                          level_pattern=level_pattern, enabled=not disabled)
    except ValueError as exc:  # pydantic's ValidationError: name the field
        raise _fail(f"invalid feed: {exc}") from exc
    with _registry_errors():
        admin.add_feed(path, feed)
    typer.echo(f"added {feed.id} to {path}")


def feeds_remove(feed_id: Annotated[str, typer.Argument(metavar="ID")], file: FileOption = None) -> None:
    """Remove a feed from the registry (its history stays in the database)."""
    path = _path(file)
    with _registry_errors():
        admin.remove_feed(path, feed_id)
    typer.echo(f"removed {feed_id} from {path}")


def feeds_enable(feed_id: Annotated[str, typer.Argument(metavar="ID")], file: FileOption = None) -> None:
    """Enable a feed, and clear an auto-disable after errors."""
    path = _path(file)
    with _registry_errors():
        admin.set_enabled(path, feed_id, True)
    cleared = asyncio.run(_clear(feed_id))
    typer.echo(f"enabled {feed_id}" + (f" (cleared: {cleared})" if cleared else ""))


async def _clear(feed_id: str) -> str | None:
    from prevent.platform.storage.db import Database

    db = Database(get_settings().effective_database_url)
    try:
        await db.upgrade()
        return await admin.clear_auto_disable(db, feed_id)
    finally:
        await db.dispose()


def feeds_disable(feed_id: Annotated[str, typer.Argument(metavar="ID")], file: FileOption = None) -> None:
    """Disable a feed (kept in the registry, not polled)."""
    path = _path(file)
    with _registry_errors():
        admin.set_enabled(path, feed_id, False)
    typer.echo(f"disabled {feed_id}")


def feeds_status(file: FileOption = None,
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Per-feed health: last success and error, error streak, next poll, auto-disable, 304 ratio."""
    settings = get_settings()
    path = file or settings.feeds_file
    with _registry_errors():
        rows = asyncio.run(admin.status_rows(settings, path))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.as_dict()))
    else:
        typer.echo(admin.format_status(rows))


def register(feeds_app: typer.Typer) -> None:
    feeds_app.command("list")(feeds_list)
    feeds_app.command("add")(feeds_add)
    feeds_app.command("remove")(feeds_remove)
    feeds_app.command("enable")(feeds_enable)
    feeds_app.command("disable")(feeds_disable)
    feeds_app.command("status")(feeds_status)
