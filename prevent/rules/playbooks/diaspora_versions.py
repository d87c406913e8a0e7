"""The diaspora map as engagement officers keep it: stored in versions, as playbooks are.

``playbooks/diaspora.yaml`` is the seed (stored as version 1 on first start) and what
``prevent diaspora export`` writes; the newest stored version is the map in force. Every
save, import or rollback stores a new version (author, time, note), is audited, and is
announced on ``prevent.playbooks.v1`` (``diaspora_version`` set): running rules consumers
load it and classify with it from their next batch, without a restart. A version that
does not validate (schema, unknown community ids) is never stored; problems name the line
of the edited text.

Role checks live here: engagement officers (and administrators) edit the map; every
role may read it and its history.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent import audit
from prevent.classification import Classifier
from prevent.classification.diaspora import DIASPORA_FILE, DiasporaFile, DiasporaMap, diaspora_errors
from prevent.classification.lexicon import Lexicon, load_lexicon
from prevent.contracts import PLAYBOOKS, PlaybooksChanged, stable_id, utcnow
from prevent.platform.storage import outbox
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import DiasporaVersion
from prevent.rules.playbooks import store
from prevent.rules.playbooks.editing import (
    Conflict,
    EditError,
    note_problems,
    split_problem,
    unified_diff,
)
from prevent.users import Principal, Role, require

log = logging.getLogger("prevent.diaspora")

EDITORS = (Role.ENGAGEMENT_OFFICER, Role.ADMIN)
SUBJECT = "diaspora-map"
MAX_SOURCE_CHARS = 500_000
SEED_AUTHOR = "seed"

__all__ = ["EDITORS", "Conflict", "EditError", "unified_diff"]

Problems = list[tuple[int | None, str]]


@lru_cache(maxsize=4)
def known_communities(playbooks_dir: Path) -> frozenset[str]:
    """The community ids a map may name (``communities.yaml``)."""
    return frozenset(c.id for c in load_lexicon(playbooks_dir).communities.communities)


def validate(text: str, known: Iterable[str], name: str = DIASPORA_FILE
             ) -> tuple[DiasporaFile | None, Problems]:
    """(the map, []) or (None, problems as (line of ``text``, message))."""
    if len(text) > MAX_SOURCE_CHARS:
        return None, [(None, f"the diaspora map is longer than {MAX_SOURCE_CHARS} characters")]
    data, errors = diaspora_errors(text, name, set(known))
    return data, [split_problem(e) for e in errors]


def problem_lines(problems: Problems, name: str) -> list[str]:
    """Problems as ``name:line: message`` (the CLI's file:line form)."""
    return [f"{name}:{line}: {msg}" if line is not None else f"{name}: {msg}" for line, msg in problems]


# ------------------------------------------------------------------ what a version changes


@dataclass(frozen=True)
class LinkChange:
    """One country's or region's links before and after (empty: not in the map)."""

    key: str  # an ISO country code, or a region id (IN-PB)
    kind: str  # "country" or "region"
    before: tuple[str, ...]
    after: tuple[str, ...]
    detail: str = ""  # a region's majority faith or names, when those changed

    @property
    def added(self) -> tuple[str, ...]:
        return tuple(c for c in self.after if c not in self.before)

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(c for c in self.before if c not in self.after)

    def summary(self) -> str:
        parts = [f"+{c}" for c in self.added] + [f"-{c}" for c in self.removed]
        if not self.before and not self.after:
            parts = []
        text = f"{self.key}: {' '.join(parts)}" if parts else self.key
        return f"{text} ({self.detail})" if self.detail else text


def link_changes(old: DiasporaFile | None, new: DiasporaFile) -> list[LinkChange]:
    """What a new version changes in the links the classifier uses, country by country and
    region by region (notes and order aside)."""
    changes: list[LinkChange] = []

    def countries(data: DiasporaFile | None) -> dict[str, tuple[str, ...]]:
        found: dict[str, tuple[str, ...]] = {}
        for link in data.countries if data else ():
            found[link.country] = tuple(dict.fromkeys(found.get(link.country, ()) + link.communities))
        return found

    before, after = countries(old), countries(new)
    for code in sorted(set(before) | set(after)):
        b, a = before.get(code, ()), after.get(code, ())
        if set(b) != set(a):
            changes.append(LinkChange(code, "country", b, a))
    old_regions = {r.id: r for r in old.regions} if old else {}
    new_regions = {r.id: r for r in new.regions}
    for rid in sorted(set(old_regions) | set(new_regions)):
        r0, r1 = old_regions.get(rid), new_regions.get(rid)
        b = r0.communities if r0 else ()
        a = r1.communities if r1 else ()
        details = []
        if r0 is None:
            details.append("new region")
        elif r1 is None:
            details.append("region removed")
        else:  # every other field the classifier reads (majority faith, names, ...)
            for field in type(r1).model_fields:
                if field in ("id", "communities", "note"):
                    continue
                was, now = getattr(r0, field), getattr(r1, field)
                if field == "names" and set(was) != set(now):
                    details.append("names changed")
                elif field != "names" and was != now:
                    details.append(f"{field.replace('_', ' ')} {_text(was)} → {_text(now)}")
        if set(b) != set(a) or details:
            changes.append(LinkChange(rid, "region", b, a, "; ".join(details)))
    return changes


def _text(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return "-" if value is None else str(value)


# ------------------------------------------------------------------ storage


async def latest(session: AsyncSession) -> DiasporaVersion | None:
    return (await session.execute(select(DiasporaVersion).order_by(DiasporaVersion.version.desc())
                                  .limit(1))).scalars().first()


async def history(session: AsyncSession) -> list[DiasporaVersion]:
    return list((await session.execute(
        select(DiasporaVersion).order_by(DiasporaVersion.version.desc()))).scalars())


async def get_version(session: AsyncSession, version: int) -> DiasporaVersion | None:
    return await session.get(DiasporaVersion, version)


async def _store(session: AsyncSession, text: str, data: DiasporaFile, *, author: str, note: str,
                 action: str, extra: dict[str, object] | None = None) -> int | None:
    """Store ``text`` as the next version (unless it is the one in force), audit it and
    announce it. Returns the new version, or None when nothing changed."""
    current = await latest(session)
    if current is not None and current.source == text:
        return None
    old = read_unchecked(current.source) if current is not None else None
    version = (current.version if current else 0) + 1
    session.add(DiasporaVersion(version=version, source=text, author=author, note=note,
                                created_at=utcnow()))
    changes = [c.summary() for c in link_changes(old, data)]
    await audit.record(session, actor=author, action=action, subject=SUBJECT,
                       before={"version": current.version} if current else None,
                       after={"version": version, "changes": changes[:50],
                              "more_changes": max(0, len(changes) - 50)} | (extra or {}),
                       reason=note or None)
    playbooks = {r.playbook_id: r.version for r in await store.latest_versions(session)}
    event = PlaybooksChanged(versions=playbooks, actor=author, at=utcnow(), diaspora_version=version)
    await outbox.stage(session, PLAYBOOKS, event, key="playbooks",
                       event_id=stable_id("diaspora", version))
    return version


class _Anything(set[str]):
    def __contains__(self, item: object) -> bool:  # every id is known
        return True


def read_unchecked(text: str) -> DiasporaFile | None:
    """A stored version, read only to say what changed: every community id it names counts
    as known (one renamed since must not hide the change). None if it is not a map."""
    return diaspora_errors(text, "previous", _Anything())[0]


def _note_problems(note: str) -> Problems:
    return note_problems(note)  # the same rule as a playbook version's note


def _check_base(current: DiasporaVersion | None, base_version: int | None) -> None:
    if current is not None and base_version is not None and current.version != base_version:
        raise Conflict(f"{current.author} saved version {current.version} of the diaspora map after "
                       f"you opened version {base_version}: compare, then edit the newest version")


async def save_draft(session: AsyncSession, principal: Principal, text: str, *, note: str,
                     base_version: int | None, known: Iterable[str]) -> int | None:
    """Store an edited map as a new version. Returns it, or None when the draft is the map in
    force. Raises PermissionDenied, EditError (nothing stored) or Conflict."""
    require(principal, *EDITORS, action="edit the diaspora map")
    note = note.strip()
    data, problems = validate(text, known)
    problems += _note_problems(note)
    if problems or data is None:
        raise EditError(problems)
    _check_base(await latest(session), base_version)
    return await _store(session, text, data, author=principal.name, note=note, action="diaspora.apply")


async def rollback(session: AsyncSession, principal: Principal, version: int, *, note: str,
                   base_version: int | None, known: Iterable[str]) -> int | None:
    """Put an earlier version back in force, stored as a new version (history is never
    rewritten). Raises PermissionDenied, LookupError, EditError (the earlier version does not
    validate against today's schema or communities) or Conflict."""
    require(principal, *EDITORS, action="roll back the diaspora map")
    row = await get_version(session, version)
    if row is None:
        raise LookupError(f"no stored version {version} of the diaspora map")
    note = note.strip()
    data, problems = validate(row.source, known, f"diaspora@v{version}")
    problems += _note_problems(note)
    if problems or data is None:
        raise EditError(problems)
    _check_base(await latest(session), base_version)
    return await _store(session, row.source, data, author=principal.name,
                        note=f"rollback to v{version}: {note}", action="diaspora.rollback",
                        extra={"restored": version})


async def import_text(session: AsyncSession, text: str, name: str, *, author: str, note: str,
                      known: Iterable[str], force: bool = False) -> int | None:
    """``prevent diaspora import FILE``: validate and store the file as a new version. A file
    that is an earlier stored version while a newer one is in force (an edit in the console)
    is refused unless ``force``. Raises EditError (problems carry the file's lines)."""
    data, problems = validate(text, known, name)
    if problems or data is None:
        raise EditError(problems)
    current = await latest(session)
    if not force and current is not None and current.source != text:
        base = (await session.execute(select(DiasporaVersion.version).where(
            DiasporaVersion.source == text).order_by(DiasporaVersion.version.desc()).limit(1))).scalar()
        if base is not None and base < current.version:
            raise Conflict(
                f"{name}: is version {base} of the diaspora map, but version {current.version} "
                f"(by {current.author}, {current.created_at:%Y-%m-%d %H:%M} UTC"
                f"{': ' + current.note if current.note else ''}) is newer; importing would undo it. "
                "`prevent diaspora export` to get it, or --force to overwrite it")
    return await _store(session, text, data, author=author, note=note.strip(), action="diaspora.apply")


async def seed(session: AsyncSession, directory: Path) -> int | None:
    """At start: store ``directory``'s diaspora.yaml as version 1 when none is stored, and as
    the next version when it changed while every stored version is a seed (no officer has
    changed the map yet: the file is still the default). Once an officer has saved, imported
    or rolled back a version, the file is never applied again by itself."""
    path = directory / DIASPORA_FILE
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    current = await latest(session)
    if current is not None and (current.author != SEED_AUTHOR or current.source == text):
        return None
    data, problems = validate(text, known_communities(directory), str(path))
    if data is None:
        for line in problem_lines(problems, str(path)):
            log.error("diaspora map not seeded: %s", line)
        return None
    note = "seeded from playbooks/" if current is None else "updated from playbooks/ (no officer edit yet)"
    return await _store(session, text, data, author=SEED_AUTHOR, note=note, action="diaspora.apply")


# ------------------------------------------------------------------ the map in force


@dataclass(frozen=True)
class InForce:
    """The stored version a process classifies with (None: the file, nothing stored)."""

    version: int | None
    source: str | None


async def in_force(db: Database) -> InForce:
    async with db.transaction() as session:
        row = await latest(session)
    return InForce(row.version, row.source) if row is not None else InForce(None, None)


def with_map(lexicon: Lexicon, text: str, name: str = DIASPORA_FILE) -> Lexicon:
    """``lexicon`` with the map ``text`` in place of its own; raises EditError when the text
    does not validate (the caller keeps the map it has)."""
    known = {c.id for c in lexicon.communities.communities}
    data, problems = validate(text, known, name)
    if data is None:
        raise EditError(problems)
    return replace(lexicon, diaspora=DiasporaMap.build(data))


def classifier_for(lexicon: Lexicon, stored: InForce, *, current: Classifier | None = None,
                   warm: bool = False) -> Classifier | None:
    """A classifier of ``lexicon`` (the files') with the stored map in place of the file's
    (the file's when nothing is stored): ``current`` itself when it already has that map;
    None when the stored version does not validate (logged; the caller keeps the map it
    has). Blocking (``warm`` compiles every language): run it off the event loop."""
    if stored.source is not None:
        try:
            lexicon = with_map(lexicon, stored.source, f"diaspora@v{stored.version}")
        except EditError as exc:
            log.error("stored diaspora map v%s left out (the map in force stays): %s",
                      stored.version, exc)
            return None
    if current is not None and current.lexicon.diaspora == lexicon.diaspora:
        return current
    classifier = Classifier(lexicon)
    if warm:
        classifier.warm()
    return classifier


@lru_cache(maxsize=4)
def cached_classifier(directory: Path, stored: InForce) -> Classifier:
    """A classifier of the files with the stored map, built once per stored version (the
    console's backtests). Blocking."""
    base = Classifier.from_dir(directory)
    return classifier_for(base.lexicon, stored, current=base) or base


def file_source(directory: Path) -> str | None:
    path = directory / DIASPORA_FILE
    return path.read_text(encoding="utf-8") if path.is_file() else None
