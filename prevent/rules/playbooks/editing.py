"""Editing one playbook (the console's editor): validate a draft, backtest it over stored
incidents, and save it as a new version through the same path as `prevent playbooks apply`.

Role checks live here, in the domain: engagement officers (and administrators) edit
playbooks; every role may read them and run a backtest of what is stored.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.classification import Classifier
from prevent.contracts import utcnow
from prevent.notices.templates import NoticeRenderer
from prevent.platform.config import get_settings
from prevent.platform.storage.tables import IncidentRow, PlaybookVersion
from prevent.platform.yamlsource import SourceError
from prevent.rules.playbooks import store
from prevent.rules.playbooks.backtest import IncidentInput, classify_item, incident_from_payload, subject_for
from prevent.rules.playbooks.evaluate import CompiledPlaybook, CompiledSet, Subject
from prevent.rules.playbooks.loader import PlaybookSet, parse_sources
from prevent.rules.playbooks.schema import Playbook
from prevent.users import Principal, Role, require

EDITORS = (Role.ENGAGEMENT_OFFICER, Role.ADMIN)
BACKTEST_DAYS = 30
MAX_BACKTEST_INCIDENTS = 5000  # the newest ones; the page says when it stopped there
MAX_SOURCE_CHARS = 200_000
MAX_NOTE_CHARS = 2000
EXERCISE_FEED = "exercise"  # lifecycle.raise_exercise's incidents: not from any feed
_PROBLEM = re.compile(r"^(?P<source>.*?):(?P<line>\d+): (?P<message>.*)$", re.DOTALL)


class EditError(ValueError):
    """The draft cannot be saved; ``problems`` are ``(line or None, message)`` pairs."""

    def __init__(self, problems: Sequence[tuple[int | None, str]]) -> None:
        super().__init__("; ".join(m for _, m in problems))
        self.problems = list(problems)


class Conflict(Exception):
    """Someone stored a newer version since the editor opened the draft."""


def split_problem(problem: str) -> tuple[int | None, str]:
    """``source:line: path: message`` -> (line, ``path: message``)."""
    found = _PROBLEM.match(problem)
    if not found:
        return None, problem
    return int(found["line"]), found["message"]


def source_name(playbook_id: str) -> str:
    return f"{playbook_id}.yaml"


def validate(text: str, name: str) -> tuple[Playbook | None, list[tuple[int | None, str]]]:
    """Parse one source exactly as ``apply`` will; (playbook, []) or (None, problems)."""
    if len(text) > MAX_SOURCE_CHARS:
        return None, [(None, f"the playbook is longer than {MAX_SOURCE_CHARS} characters")]
    try:
        return parse_sources([(name, text)])[0], []
    except SourceError as exc:
        return None, [split_problem(p) for p in exc.problems]


def _line_of(text: str, pattern: str) -> int | None:
    found = re.search(pattern, text, re.MULTILINE)
    return text.count("\n", 0, found.start()) + 1 if found else None


def reference_problems(playbook: Playbook, text: str, templates_dir: Path
                       ) -> list[tuple[int | None, str]]:
    """What `prevent playbooks check` finds beyond the schema: every notice template the
    playbook names must exist (in each language) and compile, or confirming would send the
    generic default text."""
    renderer = NoticeRenderer(templates_dir)
    problems: list[tuple[int | None, str]] = []
    for audience in playbook.response.notify:
        line = _line_of(text, rf"^\s*-?\s*template:\s*['\"]?{re.escape(audience.template)}\b")
        problems += [(line, f"response.notify template '{audience.template}': {p}")
                     for p in renderer.check(audience.template)]
    return problems


def check_draft(text: str, *, playbook_id: str | None, existing: set[str],
                templates_dir: Path | None = None
                ) -> tuple[Playbook | None, list[tuple[int | None, str]]]:
    """Validate a draft for ``playbook_id`` (None: a new playbook whose id must be free),
    as `prevent playbooks check` does: the schema, then the templates it names
    (``templates_dir``; default: the configured playbooks directory's)."""
    playbook, problems = validate(text, source_name(playbook_id or "new"))
    if playbook is None:
        return None, problems
    templates_dir = templates_dir or get_settings().playbooks_dir / "templates"
    if references := reference_problems(playbook, text, templates_dir):
        return None, references
    if playbook_id is not None and playbook.id != playbook_id:
        return None, [(1, f"id: the draft's id '{playbook.id}' differs from the playbook being "
                          f"edited '{playbook_id}' (create a new playbook instead)")]
    if playbook_id is None and playbook.id in existing:
        return None, [(1, f"id: a playbook '{playbook.id}' already exists; edit it instead")]
    return playbook, []


async def save_draft(session: AsyncSession, principal: Principal, text: str, *, note: str,
                     playbook_id: str | None, base_version: int | None,
                     templates_dir: Path | None = None) -> int | None:
    """Store the draft as a new version (audited, announced on prevent.playbooks.v1 through
    the outbox). Returns the new version, or None when the draft equals the stored one.
    Raises PermissionDenied, EditError (nothing stored) or Conflict."""
    require(principal, *EDITORS, action="edit playbooks")
    note = note.strip()
    latest = {r.playbook_id: r for r in await store.latest_versions(session)}
    playbook, problems = check_draft(text, playbook_id=playbook_id, existing=set(latest),
                                     templates_dir=templates_dir)
    problems += note_problems(note)
    if problems or playbook is None:
        raise EditError(problems)
    check_base(latest.get(playbook.id), base_version)
    changed = await store.apply_sources(session, [(source_name(playbook.id), text)],
                                        author=principal.name, note=note)
    return changed.get(playbook.id)


def note_problems(note: str) -> list[tuple[int | None, str]]:
    if not note:
        return [(None, "note: say what this version changes and why (required)")]
    if len(note) > MAX_NOTE_CHARS:
        return [(None, f"note: at most {MAX_NOTE_CHARS} characters")]
    return []


def check_base(current: PlaybookVersion | None, base_version: int | None) -> None:
    """Raise Conflict when a version newer than the one the page was opened on is in force."""
    if current is not None and base_version is not None and current.version != base_version:
        raise Conflict(f"{current.author} saved version {current.version} of "
                       f"{current.playbook_id} after you opened version {base_version}: "
                       "compare, then edit the newest version")


async def rollback(session: AsyncSession, principal: Principal, playbook_id: str, version: int, *,
                   note: str, base_version: int | None, templates_dir: Path | None = None
                   ) -> int | None:
    """Put an earlier version of a playbook back in force, stored as a new version (history is
    never rewritten), audited as ``playbook.rollback`` and announced like a save. Returns the
    new version, or None when that text is already in force. ``base_version`` (the version in
    force when the page was opened) is required. Raises PermissionDenied, LookupError,
    EditError (the earlier version fails today's checks, or no note) or Conflict."""
    require(principal, *EDITORS, action="roll back playbooks")
    row = await store.get_version(session, playbook_id, version)
    if row is None:
        raise LookupError(f"no stored version {version} of playbook {playbook_id}")
    note = note.strip()
    latest = {r.playbook_id: r for r in await store.latest_versions(session)}
    _, problems = check_draft(row.source, playbook_id=playbook_id, existing=set(latest),
                              templates_dir=templates_dir)
    problems += note_problems(note)
    if problems:
        raise EditError(problems)
    current = latest.get(playbook_id)
    if base_version is None:
        raise Conflict("the page did not say which version was in force when it was opened: "
                       "reload it")
    check_base(current, base_version)
    changed = await store.apply_sources(
        session, [(source_name(playbook_id), row.source)], author=principal.name,
        note=f"rollback to v{version}: {note}", action="playbook.rollback",
        extra={"restored": version})
    return changed.get(playbook_id)


async def history(session: AsyncSession, playbook_id: str) -> list[PlaybookVersion]:
    query = (select(PlaybookVersion).where(PlaybookVersion.playbook_id == playbook_id)
             .order_by(PlaybookVersion.version.desc()))
    return list((await session.execute(query)).scalars())


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> list[tuple[str, str]]:
    """Lines of a unified diff with a kind for styling: add, del, hunk, head or context."""
    lines = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name,
                                     lineterm=""):
        if line.startswith(("+++", "---")):
            kind = "head"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "context"
        lines.append((kind, line))
    return lines


# ------------------------------------------------------------------ backtest


async def recent_incidents(session: AsyncSession, *, days: int = BACKTEST_DAYS,
                           limit: int = MAX_BACKTEST_INCIDENTS) -> tuple[list[IncidentInput], bool]:
    """Stored incidents published in the last ``days`` (newest version of each), oldest first;
    and whether the limit cut the list short."""

    since = utcnow() - timedelta(days=days)
    rows = (await session.execute(
        select(IncidentRow.incident_id, IncidentRow.payload)
        .where(IncidentRow.published_at >= since, IncidentRow.feed_id != EXERCISE_FEED)
        .order_by(IncidentRow.published_at.desc(), IncidentRow.received_at.desc())
        .limit(limit * 2))).all()
    newest: dict[str, dict[str, Any]] = {}
    for incident_id, payload in rows:
        newest.setdefault(incident_id, payload)
    items = []
    for payload in list(newest.values())[:limit]:
        try:
            items.append(incident_from_payload(payload))
        except (KeyError, ValueError):  # not an incident as the rules consumer stores it
            continue
    items.reverse()
    return items, len(newest) > limit or len(rows) == limit * 2


@dataclass(frozen=True)
class Hit:
    title: str
    published: datetime | None
    incident_id: str | None
    change: str = ""  # for a draft: "new" (only the draft fires), "" (both fire)


@dataclass
class Backtest:
    incidents: int
    truncated: bool
    counts: dict[str, int] = field(default_factory=dict)
    hits: dict[str, list[Hit]] = field(default_factory=dict)
    # Draft comparisons: incidents the stored version fired on but the draft would not.
    dropped: list[Hit] = field(default_factory=list)
    stored_count: int | None = None


def _hit(item: IncidentInput, change: str = "") -> Hit:
    return Hit(item.title, item.published, item.id, change)


def backtest_set(items: Sequence[IncidentInput], classifier: Classifier, playbooks: PlaybookSet, *,
                 truncated: bool = False, examples: int = 20) -> Backtest:
    """What each stored playbook would have fired on (each incident judged at its own time,
    as `prevent playbooks test --since`)."""
    compiled = CompiledSet(playbooks)
    result = Backtest(len(items), truncated, counts={cp.playbook.id: 0 for cp in compiled.compiled})
    for item in items:
        subject, now = _subject(item, classifier)
        for cp in compiled.matching(subject, now):
            result.counts[cp.playbook.id] += 1
            examples_of = result.hits.setdefault(cp.playbook.id, [])
            if len(examples_of) < examples:
                examples_of.append(_hit(item))
    return result


def backtest_draft(items: Sequence[IncidentInput], classifier: Classifier, draft: Playbook,
                   stored: Playbook | None, *, truncated: bool = False, examples: int = 200) -> Backtest:
    """What the draft would have fired on, compared with the stored version."""
    new = _compiled(draft)
    old = _compiled(stored) if stored is not None else None
    result = Backtest(len(items), truncated, counts={draft.id: 0},
                      stored_count=0 if old is not None else None)
    hits = result.hits.setdefault(draft.id, [])
    for item in items:
        subject, now = _subject(item, classifier)
        fires = new.matches(subject, now)
        fired = old is not None and old.matches(subject, now)
        if fired:
            result.stored_count = (result.stored_count or 0) + 1
        if fires:
            result.counts[draft.id] += 1
            if len(hits) < examples:
                hits.append(_hit(item, "" if fired or old is None else "new"))
        elif fired and len(result.dropped) < examples:
            result.dropped.append(_hit(item))
    return result


def _compiled(playbook: Playbook) -> CompiledPlaybook:
    return CompiledSet(PlaybookSet((playbook,))).compiled[0]


def _subject(item: IncidentInput, classifier: Classifier) -> tuple[Subject, datetime]:
    c = classify_item(classifier, item)
    published = item.published or utcnow()
    return subject_for(item, c, published), published
