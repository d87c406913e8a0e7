"""Versioned playbooks in the database; the YAML files in ``playbooks/`` are seed and export.

Every apply stores a new version of each changed playbook (author, time, note)
and announces the new set on ``prevent.playbooks.v1``; running rules consumers
swap to it atomically.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.contracts import PLAYBOOKS, PlaybooksChanged, stable_id, utcnow
from prevent.platform.storage import outbox
from prevent.platform.storage.tables import PlaybookVersion
from prevent.rules.playbooks.loader import PlaybookSet, parse_sources, playbook_files


async def latest_versions(session: AsyncSession) -> list[PlaybookVersion]:
    newest = (select(PlaybookVersion.playbook_id, func.max(PlaybookVersion.version).label("v"))
              .group_by(PlaybookVersion.playbook_id).subquery())
    query = select(PlaybookVersion).join(
        newest, (PlaybookVersion.playbook_id == newest.c.playbook_id)
        & (PlaybookVersion.version == newest.c.v)).order_by(PlaybookVersion.playbook_id)
    return list((await session.execute(query)).scalars())


async def current_set(session: AsyncSession) -> PlaybookSet:
    rows = await latest_versions(session)
    playbooks = parse_sources((f"{r.playbook_id}@v{r.version}", r.source) for r in rows)
    return PlaybookSet(tuple(playbooks), {r.playbook_id: r.version for r in rows})


async def get_version(session: AsyncSession, playbook_id: str, version: int) -> PlaybookVersion | None:
    return await session.get(PlaybookVersion, (playbook_id, version))


async def apply_sources(session: AsyncSession, sources: Iterable[tuple[str, str]], *, author: str,
                        note: str = "", action: str = "playbook.apply",
                        extra: dict[str, object] | None = None) -> dict[str, int]:
    """Validate all sources (raises SourceError, storing nothing), store changed ones as new
    versions, announce the new set. Returns {playbook id: new version} of what changed.
    ``action`` and ``extra`` (merged into the audit's ``after``) name what stored it: an
    apply, a save in the console, a rollback."""
    sources = list(sources)
    parsed = parse_sources(sources)
    current = {r.playbook_id: r for r in await latest_versions(session)}
    changed: dict[str, int] = {}
    for playbook, (_name, text) in zip(parsed, sources, strict=True):
        previous = current.get(playbook.id)
        if previous is not None and previous.source == text:
            continue
        version = (previous.version if previous else 0) + 1
        session.add(PlaybookVersion(playbook_id=playbook.id, version=version, source=text,
                                    author=author, note=note, created_at=utcnow()))
        changed[playbook.id] = version
        await audit.record(session, actor=author, action=action,
                           subject=f"playbook:{playbook.id}",
                           before={"version": previous.version} if previous else None,
                           after={"version": version} | (extra or {}), reason=note or None)
    if changed:
        versions = {pid: r.version for pid, r in current.items()} | changed
        event = PlaybooksChanged(versions=versions, actor=author, at=utcnow())
        await outbox.stage(session, PLAYBOOKS, event, key="playbooks",
                           event_id=stable_id("pbs", sorted(versions.items())))
    return changed


async def apply_directory(session: AsyncSession, directory: Path, *, author: str,
                          note: str = "") -> dict[str, int]:
    files = playbook_files(directory)
    return await apply_sources(session, ((str(p), p.read_text(encoding="utf-8")) for p in files),
                               author=author, note=note)


async def stale_sources(session: AsyncSession, sources: Iterable[tuple[str, str]]) -> list[str]:
    """Files that would undo a newer stored version: the file's text is an earlier stored
    version of its playbook (its base) while a later one is in force (saved in the console,
    say). One line per file naming both versions; empty when applying is safe."""
    sources = list(sources)
    parsed = parse_sources(sources)
    current = {r.playbook_id: r for r in await latest_versions(session)}
    problems = []
    for playbook, (name, text) in zip(parsed, sources, strict=True):
        latest = current.get(playbook.id)
        if latest is None or latest.source == text:
            continue
        base = (await session.execute(select(PlaybookVersion.version).where(
            PlaybookVersion.playbook_id == playbook.id, PlaybookVersion.source == text)
            .order_by(PlaybookVersion.version.desc()).limit(1))).scalar()
        if base is not None and base < latest.version:
            problems.append(
                f"{name}: is version {base} of {playbook.id}, but version {latest.version} "
                f"(by {latest.author}, {latest.created_at:%Y-%m-%d %H:%M} UTC"
                f"{': ' + latest.note if latest.note else ''}) is newer; applying would undo it. "
                "`prevent playbooks export` to get it, or --force to overwrite it")
    return problems
