"""The `prevent playbooks test | explain | export` commands: I/O around ``backtest``."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table
from sqlalchemy import select

from prevent.classification import Classifier
from prevent.contracts import utcnow
from prevent.platform.config import Settings
from prevent.platform.storage.db import open_db
from prevent.platform.storage.tables import IncidentRow, PlaybookVersion
from prevent.rules.playbooks import store
from prevent.rules.playbooks.backtest import (
    IncidentInput,
    evaluate,
    explain,
    incident_from_payload,
    parse_time,
    read_jsonl,
    run_cases,
    summarize,
)
from prevent.rules.playbooks.evaluate import CompiledSet
from prevent.rules.playbooks.loader import PlaybookSet, load_directory

console = Console()
notes = Console(stderr=True)  # which playbooks are judged: on stderr, out of piped output


def _engine(directory: Path, stored: PlaybookSet | None = None) -> tuple[Classifier, CompiledSet]:
    return Classifier.from_dir(directory), CompiledSet(stored or load_directory(directory))


def has_database(settings: Settings) -> bool:
    """A database to judge by: one configured, or the default SQLite file already there (a
    missing one is not created just to find it empty)."""
    return bool(settings.database_url) or (settings.var_dir / "prevent.db").exists()


async def _in_force(settings: Settings) -> PlaybookSet | None:
    async with open_db(settings) as db, db.transaction() as session:
        stored = await store.current_set(session)
    return stored if stored.playbooks else None


def playbooks_in_force(settings: Settings, directory: Path, *, from_files: bool) -> PlaybookSet | None:
    """The versions in force in the database (what the rules consumer judges by: an edit in
    the console included), unless ``from_files`` or there is no database; None means the
    files in ``directory``. Says on stderr which it is."""
    stored = None if from_files or not has_database(settings) else asyncio.run(_in_force(settings))
    if stored is None:
        notes.print(f"[dim]judging the playbook files in {directory}[/dim]")
    else:
        versions = ", ".join(f"{pid} v{v}" for pid, v in sorted(stored.versions.items()))
        notes.print(f"[dim]judging the versions in force in the database ({versions}); "
                    "--from-files to judge the files[/dim]")
    return stored


def run_test_command(settings: Settings, directory: Path, *, since: timedelta | None,
                     input_file: Path | None, at: str | None, from_files: bool = False) -> bool:
    if input_file is None and since is None:  # the golden cases test the files
        classifier, playbooks = _engine(directory)
        return _run_cases(directory, classifier, playbooks)
    classifier, playbooks = _engine(directory, playbooks_in_force(settings, directory,
                                                                  from_files=from_files))
    items = read_jsonl(input_file) if input_file else asyncio.run(_stored_incidents(settings, since))
    verdicts = list(evaluate(track(items, description="backtesting", console=console),
                             classifier, playbooks, at=parse_time(at)))
    counts, examples = summarize(verdicts)
    table = Table(title=f"What would have fired over {len(verdicts)} incidents")
    table.add_column("playbook")
    table.add_column("fired", justify="right")
    table.add_column("examples")
    for cp in playbooks.compiled:
        pid = cp.playbook.id
        table.add_row(pid, str(counts.get(pid, 0)), "\n".join(examples.get(pid, [])[:3]))
    console.print(table)
    return True


def _run_cases(directory: Path, classifier: Classifier, playbooks: CompiledSet) -> bool:
    results = run_cases(directory / "tests", classifier, playbooks)
    for r in results:
        mark = "[green]pass[/green]" if r.passed else "[red]FAIL[/red]"
        console.print(f"{mark} {r.name}")
        for problem in r.problems:
            console.print(f"     {r.source}: {problem}")
    failed = sum(not r.passed for r in results)
    console.print(f"{len(results) - failed} passed, {failed} failed")
    return failed == 0 and bool(results)


async def _stored_incidents(settings: Settings, since: timedelta | None) -> list[IncidentInput]:
    async with open_db(settings) as db, db.transaction() as session:
        query = select(IncidentRow.payload).order_by(IncidentRow.published_at)
        if since:
            query = query.where(IncidentRow.published_at >= utcnow() - since)
        payloads = (await session.execute(query)).scalars().all()
    # Exercises are not real incidents: they never count in a backtest.
    return [incident_from_payload(p) for p in payloads if "incident_id" in p and not p.get("exercise")]




async def _find_incident(settings: Settings, incident_id: str) -> IncidentInput:
    async with open_db(settings) as db, db.transaction() as session:
        payload = (await session.execute(select(IncidentRow.payload).where(
            IncidentRow.incident_id == incident_id).limit(1))).scalar()
    if payload is None:
        raise LookupError(f"no stored incident {incident_id} (give a JSON file instead?)")
    return incident_from_payload(payload)


def run_explain_command(settings: Settings, target: str, only: str | None, at: str | None,
                        from_files: bool = False) -> None:
    path = Path(target)
    item = (IncidentInput.model_validate(json.loads(path.read_text(encoding="utf-8")))
            if path.is_file() else asyncio.run(_find_incident(settings, target)))
    directory = settings.playbooks_dir
    classifier, playbooks = _engine(directory, playbooks_in_force(settings, directory,
                                                                  from_files=from_files))
    c, rows = explain(item, classifier, playbooks, at=parse_time(at), only=only)
    console.print(f"[bold]{item.title}[/bold]")
    console.print(f"communities {list(c.communities)}, type {c.incident_type}, "
                  f"severity {c.severity}, country {c.country}")
    for e in c.evidence:
        console.print(f"  evidence {e.rule}: '{e.term}' in {e.field} [{e.start}:{e.end}]")
    if not rows:
        raise LookupError(f"no playbook {only}")
    for pid, version, results in rows:
        verdict = "MATCHES" if all(r.passed for r in results) else "does not match"
        console.print(f"\n[bold]{pid}[/bold] v{version}: {verdict}")
        for r in results:
            console.print(f"  {'✓' if r.passed else '✗'} {r.rule}: {r.detail}")


def run_export_command(settings: Settings, output: Path) -> list[Path]:
    async def rows() -> list[PlaybookVersion]:
        async with open_db(settings) as db, db.transaction() as session:
            return await store.latest_versions(session)

    output.mkdir(parents=True, exist_ok=True)
    written = []
    for row in asyncio.run(rows()):
        target = output / f"{row.playbook_id}.yaml"
        target.write_text(row.source, encoding="utf-8")
        written.append(target)
    return written
