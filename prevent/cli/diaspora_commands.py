"""The `prevent diaspora import | edit | history | export | rollback` commands: the stored,
versioned diaspora map from the command line (``check`` and ``show`` live in prevent/cli/main.py).

Like `prevent playbooks apply`: every change is validated first (``file:line`` problems,
exit 1, nothing stored), stored as a new version with an author and a note, audited, and
announced so that running rules consumers classify with it without a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import click
import typer
from sqlalchemy.ext.asyncio import AsyncSession

from prevent.classification import Classifier
from prevent.cli.admin import open_db
from prevent.platform.config import get_settings
from prevent.platform.storage.tables import DiasporaVersion
from prevent.rules.playbooks import diaspora_versions as diaspora
from prevent.users import Principal, Role

T = TypeVar("T")
AuthorOption = Annotated[str, typer.Option(help="who makes this change (the audit log's actor)")]
NoteOption = Annotated[str, typer.Option(help="what this version changes and why (required)")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _in_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def go() -> T:
        async with open_db(get_settings()) as db, db.transaction() as session:
            return await work(session)
    return asyncio.run(go())


def _known() -> frozenset[str]:
    return diaspora.known_communities(get_settings().playbooks_dir)


def _stored(version: int | None) -> str:
    return f"stored version {version} of the diaspora map" if version else "the diaspora map did not change"


def _report(exc: diaspora.EditError, name: str) -> typer.Exit:
    for line in diaspora.problem_lines(exc.problems, name):
        typer.echo(line, err=True)
    return typer.Exit(1)


def classifier_in_force(*, from_files: bool = False) -> Classifier:
    """The files' classifier with the diaspora map in force in the database (when there is
    one and not ``from_files``); says on stderr which map it is."""
    from prevent.cli.playbook_commands import has_database

    settings = get_settings()
    files = Classifier.from_dir(settings.playbooks_dir)
    if from_files or not has_database(settings):
        typer.echo(f"the diaspora map of {settings.playbooks_dir}", err=True)
        return files

    async def stored() -> diaspora.InForce:
        async with open_db(settings) as db:
            return await diaspora.in_force(db)

    in_force = asyncio.run(stored())
    if in_force.version is None:
        typer.echo(f"no stored map: the diaspora map of {settings.playbooks_dir}", err=True)
        return files
    typer.echo(f"the diaspora map in force in the database (v{in_force.version}); "
               "--from-files for the file's", err=True)
    return diaspora.classifier_for(files.lexicon, in_force, current=files) or files


def register(app: typer.Typer) -> None:
    app.command("import")(import_file)
    app.command("edit")(edit)
    app.command("history")(history)
    app.command("export")(export)
    app.command("rollback")(rollback)


def import_file(path: Annotated[Path, typer.Argument(help="a diaspora.yaml")],
                note: NoteOption = "", author: AuthorOption = "cli",
                force: Annotated[bool, typer.Option(
                    help="store the file even over a newer stored version")] = False) -> None:
    """Validate a diaspora map file and store it as the next version; running rules consumers
    switch to it. A file that is an earlier stored version while a newer one is in force (an
    edit in the console) is refused, naming both versions, unless --force."""
    text = path.read_text(encoding="utf-8")
    if not note.strip():
        raise _fail("--note: say what this version changes and why (required)")
    try:
        version = _in_session(lambda s: diaspora.import_text(
            s, text, str(path), author=author, note=note, known=_known(), force=force))
    except diaspora.EditError as exc:
        raise _report(exc, str(path)) from exc
    except diaspora.Conflict as exc:
        raise _fail(str(exc)) from exc
    typer.echo(_stored(version))


def edit(note: NoteOption = "", author: AuthorOption = "cli") -> None:
    """Edit the map in force in $EDITOR; saved (as the next version) only if it validates.
    On problems (``line: message``, lines of the edited text) the editor opens again."""
    if not note.strip():
        raise _fail("--note: say what this version changes and why (required)")
    current = _in_session(diaspora.latest)
    text = current.source if current else diaspora.file_source(get_settings().playbooks_dir) or ""
    base = current.version if current else None
    draft = text
    while True:
        edited = click.edit(draft, extension=".yaml", require_save=False)
        if edited is None or edited == text:
            typer.echo("no change: nothing stored")
            return
        draft = edited
        _, problems = diaspora.validate(draft, _known(), "diaspora.yaml (edited)")
        if not problems:
            break
        for line in diaspora.problem_lines(problems, "diaspora.yaml (edited)"):
            typer.echo(line, err=True)
        if not typer.confirm("Edit again?", default=True):
            raise typer.Exit(1)
    principal = Principal(author, Role.ENGAGEMENT_OFFICER)  # the CLI runs as the operator
    try:
        version = _in_session(lambda s: diaspora.save_draft(
            s, principal, draft, note=note, base_version=base, known=_known()))
    except diaspora.EditError as exc:
        raise _report(exc, "diaspora.yaml (edited)") from exc
    except diaspora.Conflict as exc:
        raise _fail(str(exc)) from exc
    typer.echo(_stored(version))


def history(diff: Annotated[str | None, typer.Option(
        help="print the changes between two versions, e.g. 3..5 (or 4: from the one before)")] = None,
            ) -> None:
    """The stored versions of the diaspora map, newest (in force) first: version, time,
    author, note; with --diff, the unified diff and the links changed between two versions."""
    versions = _in_session(diaspora.history)
    if diff is None:
        if not versions:
            typer.echo("no version stored: the file playbooks/diaspora.yaml is in force")
        for n, v in enumerate(versions):
            mark = " (in force)" if n == 0 else ""
            typer.echo(f"v{v.version}{mark}  {v.created_at:%Y-%m-%d %H:%M} UTC  {v.author}  {v.note}")
        return
    by_number = {v.version: v for v in versions}
    a_text, _, b_text = diff.partition("..")
    try:
        b = int(b_text or a_text)
        a = int(a_text) if b_text else b - 1
    except ValueError as exc:
        raise _fail(f"--diff {diff}: write two version numbers, e.g. 3..5") from exc
    if a not in by_number or b not in by_number:
        raise _fail(f"--diff {diff}: stored versions are {', '.join(str(v) for v in sorted(by_number))}")
    for _, line in diaspora.unified_diff(by_number[a].source, by_number[b].source,
                                         f"diaspora v{a}", f"diaspora v{b}"):
        typer.echo(line)
    old = diaspora.read_unchecked(by_number[a].source)
    new = diaspora.read_unchecked(by_number[b].source)
    if old is not None and new is not None:
        for change in diaspora.link_changes(old, new):
            typer.echo(f"links: {change.summary()}")


def export(output: Annotated[Path, typer.Option(help="the file to write")] = Path("playbooks/diaspora.yaml"),
           version: Annotated[int | None, typer.Option(help="a stored version (default: in force)")] = None,
           ) -> None:
    """Write the stored diaspora map (the version in force, or --version) as YAML."""
    async def pick(session: AsyncSession) -> DiasporaVersion | None:
        return await (diaspora.get_version(session, version) if version else diaspora.latest(session))

    row = _in_session(pick)
    if row is None:
        raise _fail(f"no stored version {version}" if version else "no version stored")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(row.source, encoding="utf-8")
    typer.echo(f"wrote {output} (v{row.version})")


def rollback(version: Annotated[int, typer.Argument(help="the stored version to put back in force")],
             note: NoteOption = "", author: AuthorOption = "cli") -> None:
    """Put an earlier version back in force, stored as the next version (history is kept)."""
    principal = Principal(author, Role.ENGAGEMENT_OFFICER)
    try:
        stored = _in_session(lambda s: diaspora.rollback(s, principal, version, note=note,
                                                         base_version=None, known=_known()))
    except diaspora.EditError as exc:
        raise _report(exc, f"diaspora@v{version}") from exc
    except LookupError as exc:
        raise _fail(str(exc.args[0])) from exc
    typer.echo(_stored(stored) if stored else f"version {version} is already the map in force")
