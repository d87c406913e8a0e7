"""The diaspora map kept by officers, versioned like playbooks (issue 21, point 6): drafts
validate with the line of the edited text, every save/import/rollback is a new stored version
with author, time and note, audited and announced; the rules stage classifies with a new
version from its next batch, without a restart; the CLI imports, edits, lists, diffs, exports
and rolls back."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from consumers.rules import RulesConsumer
from prevent.classification import Classifier
from prevent.cli.main import app
from prevent.contracts import FeedKind, GlobalIncident, PlaybooksChanged, utcnow
from prevent.platform.config import get_settings
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import AuditRow, DiasporaVersion, OutboxRow
from prevent.rules.playbooks import diaspora_versions as diaspora
from prevent.rules.pool import Preparer
from prevent.users import PermissionDenied, Principal, Role

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
FILE_TEXT = (PLAYBOOKS / "diaspora.yaml").read_text(encoding="utf-8")
OFFICER = Principal("officer-ana", Role.ENGAGEMENT_OFFICER)
INSPECTOR = Principal("inspector-bo", Role.DUTY_INSPECTOR)
JAMAICA = "Hurricane Melissa devastates Jamaica, killing 19"
runner = CliRunner()


def known() -> frozenset[str]:
    return diaspora.known_communities(PLAYBOOKS)


def jamaica_links(text: str, communities: str) -> str:
    """``text`` with Jamaica's communities replaced (the shipped map: black, christian)."""
    start = text.index('  - country: "JM"\n')
    line_start = text.index("    communities: [", start)
    line_end = text.index("\n", line_start)
    return text[:line_start] + f"    communities: [{communities}]" + text[line_end:]


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


# ------------------------------------------------------------------ validation


def test_a_draft_names_the_line_of_each_problem_in_the_edited_text() -> None:
    draft = jamaica_links(FILE_TEXT, "black, christian, carribean")
    draft = draft.replace('  - country: "JO"', '  - country: "JO"\n    colour: green', 1)
    data, problems = diaspora.validate(draft, known())
    assert data is None
    # Unknown keys are schema errors, reported first (the community check needs a valid schema).
    assert problems == [(line_of(draft, "colour: green"), f"countries.{_index(draft, 'JO')}.colour: "
                         "Extra inputs are not permitted")]
    draft = draft.replace("    colour: green\n", "")
    data, problems = diaspora.validate(draft, known())
    assert problems == [(line_of(draft, "carribean"),
                         f"countries.{_index(draft, 'JM')}.communities.2: unknown community 'carribean'")]
    bad_code = draft.replace('country: "JO"', 'country: "Jordan"')
    assert diaspora.validate(bad_code, known())[1][0][0] == line_of(bad_code, '"Jordan"')
    syntax = diaspora.validate("version: 1\ncountries: [\n", known())[1]
    assert syntax[0][0] == 3 and "invalid YAML" in syntax[0][1]
    assert diaspora.validate("", known())[1] == [(1, "empty file")]
    assert diaspora.validate(FILE_TEXT, known()) [1] == []


def _index(text: str, code: str) -> int:
    data = diaspora.read_unchecked(text.replace("    colour: green\n", ""))
    assert data is not None
    return next(i for i, link in enumerate(data.countries) if link.country == code)


def test_what_a_version_changes_is_said_country_by_country() -> None:
    old = diaspora.read_unchecked(FILE_TEXT)
    new = diaspora.read_unchecked(jamaica_links(FILE_TEXT, "black, haitian").replace(
        "majority_faith: sikh", "majority_faith: hindu", 1))
    assert old is not None and new is not None
    summaries = [c.summary() for c in diaspora.link_changes(old, new)]
    assert "JM: +haitian -christian" in summaries
    assert any(s.startswith("IN-PB") and "majority faith sikh → hindu" in s for s in summaries)
    assert diaspora.link_changes(old, old) == []


# ------------------------------------------------------------------ storage and versions


async def _rows(db: Database, model):
    async with db.transaction() as session:
        return list((await session.execute(select(model))).scalars())


async def test_seed_save_conflict_and_rollback_store_versions_with_author_note_and_audit(
        db: Database) -> None:
    async with db.transaction() as session:
        assert await diaspora.seed(session, PLAYBOOKS) == 1
        assert await diaspora.seed(session, PLAYBOOKS) is None  # once only
    edited = jamaica_links(FILE_TEXT, "black, christian, haitian")
    async with db.transaction() as session:
        with pytest.raises(PermissionDenied):  # duty inspectors read, they do not edit
            await diaspora.save_draft(session, INSPECTOR, edited, note="x", base_version=1,
                                      known=known())
        with pytest.raises(diaspora.EditError) as no_note:
            await diaspora.save_draft(session, OFFICER, edited, note=" ", base_version=1, known=known())
        assert "note: say what this version changes" in no_note.value.problems[0][1]
        with pytest.raises(diaspora.EditError) as bad:
            await diaspora.save_draft(session, OFFICER, jamaica_links(FILE_TEXT, "nobody"), note="x",
                                      base_version=1, known=known())
        assert bad.value.problems[0][0] == line_of(FILE_TEXT, 'country: "JM"') + 1
        assert await diaspora.save_draft(session, OFFICER, FILE_TEXT, note="same", base_version=1,
                                         known=known()) is None  # unchanged: nothing stored
        assert await diaspora.save_draft(session, OFFICER, edited, note="Haitian families in Jamaica",
                                         base_version=1, known=known()) == 2
    async with db.transaction() as session:
        with pytest.raises(diaspora.Conflict, match="officer-ana saved version 2"):
            await diaspora.save_draft(session, OFFICER, FILE_TEXT, note="stale", base_version=1,
                                      known=known())
        with pytest.raises(LookupError):
            await diaspora.rollback(session, OFFICER, 9, note="x", base_version=2, known=known())
        with pytest.raises(PermissionDenied):
            await diaspora.rollback(session, INSPECTOR, 1, note="x", base_version=2, known=known())
        assert await diaspora.rollback(session, OFFICER, 1, note="wrong link", base_version=2,
                                       known=known()) == 3
    async with db.transaction() as session:
        versions = await diaspora.history(session)
    assert [(v.version, v.author) for v in versions] == [(3, "officer-ana"), (2, "officer-ana"),
                                                        (1, diaspora.SEED_AUTHOR)]
    assert versions[0].source == FILE_TEXT and versions[0].note == "rollback to v1: wrong link"
    assert versions[1].note == "Haitian families in Jamaica" and versions[1].created_at is not None

    audit = [a for a in await _rows(db, AuditRow) if a.subject == diaspora.SUBJECT]
    assert [a.action for a in audit] == ["diaspora.apply", "diaspora.apply", "diaspora.rollback"]
    assert audit[1].actor == "officer-ana" and audit[1].reason == "Haitian families in Jamaica"
    assert audit[1].before == {"version": 1} and audit[1].after["changes"] == ["JM: +haitian"]
    assert audit[2].after["restored"] == 1 and audit[2].after["changes"] == ["JM: -haitian"]
    events = [PlaybooksChanged.model_validate_json(o.payload) for o in await _rows(db, OutboxRow)
              if o.topic == "prevent.playbooks.v1"]
    assert [e.diaspora_version for e in events] == [1, 2, 3]


async def test_an_import_that_would_undo_a_newer_version_is_refused_unless_forced(db: Database) -> None:
    edited = jamaica_links(FILE_TEXT, "black, christian, haitian")
    async with db.transaction() as session:
        assert await diaspora.import_text(session, FILE_TEXT, "diaspora.yaml", author="cli", note="first",
                                          known=known()) == 1
        assert await diaspora.save_draft(session, OFFICER, edited, note="console edit", base_version=1,
                                         known=known()) == 2
        with pytest.raises(diaspora.Conflict, match="is version 1 of the diaspora map, but version 2"):
            await diaspora.import_text(session, FILE_TEXT, "diaspora.yaml", author="cli", note="old",
                                       known=known())
        assert await diaspora.import_text(session, FILE_TEXT, "diaspora.yaml", author="cli",
                                          note="old", known=known(), force=True) == 3
        with pytest.raises(diaspora.EditError) as bad:
            await diaspora.import_text(session, "version: 2\n", "mine.yaml", author="cli", note="x",
                                       known=known())
        assert bad.value.problems[0][0] == 1


# ------------------------------------------------------------------ the rules stage


def test_a_stored_map_changes_what_the_classifier_links() -> None:
    files = Classifier.from_dir(PLAYBOOKS)
    assert "haitian" not in files.classify(JAMAICA).communities
    stored = diaspora.InForce(2, jamaica_links(FILE_TEXT, "black, christian, haitian"))
    clf = diaspora.classifier_for(files.lexicon, stored, current=files)
    assert clf is not None and clf is not files
    assert "haitian" in clf.classify(JAMAICA).communities
    same = diaspora.InForce(1, FILE_TEXT)
    assert diaspora.classifier_for(files.lexicon, same, current=files) is files  # nothing rebuilt
    broken = diaspora.InForce(3, jamaica_links(FILE_TEXT, "nobody"))
    assert diaspora.classifier_for(files.lexicon, broken, current=clf) is None


async def test_the_rules_consumer_picks_up_a_saved_version_without_a_restart(db: Database) -> None:
    files = Classifier.from_dir(PLAYBOOKS)
    ctx = SimpleNamespace(db=db, settings=SimpleNamespace(rules_workers=1, playbooks_dir=PLAYBOOKS))
    preparer = Preparer(files, workers=0)
    consumer = RulesConsumer(ctx, files, preparer, files=files.lexicon)  # type: ignore[arg-type]
    assert await consumer.reload_diaspora() is False  # nothing stored: the file's map
    async with db.transaction() as session:
        await diaspora.seed(session, PLAYBOOKS)
    assert await consumer.reload_diaspora() is True
    assert consumer.classifier is files and consumer.diaspora_version == 1  # the same map
    async with db.transaction() as session:
        await diaspora.save_draft(session, OFFICER, jamaica_links(FILE_TEXT, "black, christian, haitian"),
                                  note="Haitian families", base_version=1, known=known())
    assert await consumer.reload_diaspora() is True
    assert consumer.diaspora_version == 2 and preparer.classifier is consumer.classifier
    assert "haitian" in consumer.classifier.classify(JAMAICA).communities
    incident = GlobalIncident(incident_id="i1", feed_id="f", kind=FeedKind.RSS, title=JAMAICA,
                              published=utcnow(), first_seen=utcnow(), content_hash="h")
    assert "haitian" in preparer.prepare_here([incident])[0].classification.communities
    # A stored version that does not validate (the schema moved on) leaves the map in force.
    async with db.transaction() as session:
        session.add(DiasporaVersion(version=3, source=jamaica_links(FILE_TEXT, "nobody"), author="x",
                                    note="", created_at=utcnow()))
    in_force = consumer.classifier
    assert await consumer.reload_diaspora() is False
    assert consumer.classifier is in_force and consumer.diaspora_version == 2


# ------------------------------------------------------------------ the CLI


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("PREVENT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("PREVENT_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_the_cli_imports_edits_lists_diffs_exports_and_rolls_back(cli_env, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(jamaica_links(FILE_TEXT, "black, nobody"))
    refused = runner.invoke(app, ["diaspora", "import", str(bad), "--note", "try"])
    assert refused.exit_code == 1
    jm_line = line_of(FILE_TEXT, 'country: "JM"') + 1
    assert f"{bad}:{jm_line}: countries." in refused.output
    assert "unknown community 'nobody'" in refused.output

    no_note = runner.invoke(app, ["diaspora", "import", str(PLAYBOOKS / "diaspora.yaml")])
    assert no_note.exit_code == 1 and "--note" in no_note.output
    first = runner.invoke(app, ["diaspora", "import", str(PLAYBOOKS / "diaspora.yaml"), "--note", "initial",
                                "--author", "ana"])
    assert first.exit_code == 0 and "stored version 1" in first.output, first.output

    editor = tmp_path / "editor.sh"  # $EDITOR: adds haitian to Jamaica's communities
    editor.write_text(f"#!{sys.executable}\nimport sys, pathlib\n"
                      f"sys.path.insert(0, {str(PLAYBOOKS.parent)!r})\n"
                      "from tests.test_diaspora_versions import jamaica_links\n"
                      "p = pathlib.Path(sys.argv[1])\n"
                      "p.write_text(jamaica_links(p.read_text(), 'black, christian, haitian'))\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("EDITOR", str(editor))
    monkeypatch.setenv("VISUAL", str(editor))
    edited = runner.invoke(app, ["diaspora", "edit", "--note", "Haitian families", "--author", "bo"])
    assert edited.exit_code == 0 and "stored version 2" in edited.output, edited.output

    shown = runner.invoke(app, ["diaspora", "show", "JM"])
    assert shown.exit_code == 0 and "haitian" in shown.output and "(v2)" in shown.output
    assert "haitian" not in runner.invoke(app, ["diaspora", "show", "JM", "--from-files"]).output

    history = runner.invoke(app, ["diaspora", "history"])
    lines = history.output.splitlines()
    assert lines[0].startswith("v2 (in force)") and "bo  Haitian families" in lines[0]
    assert lines[1].startswith("v1 ") and "ana  initial" in lines[1]
    diff = runner.invoke(app, ["diaspora", "history", "--diff", "1..2"])
    assert "+    communities: [black, christian, haitian]" in diff.output
    assert "links: JM: +haitian" in diff.output

    out = tmp_path / "exported.yaml"
    assert runner.invoke(app, ["diaspora", "export", "--output", str(out), "--version", "1"]).exit_code == 0
    assert out.read_text() == FILE_TEXT
    stale = runner.invoke(app, ["diaspora", "import", str(out), "--note", "old file"])
    assert stale.exit_code == 1 and "is version 1 of the diaspora map, but version 2" in stale.output

    back = runner.invoke(app, ["diaspora", "rollback", "1", "--note", "wrong link"])
    assert back.exit_code == 0 and "stored version 3" in back.output, back.output
    assert "haitian" not in runner.invoke(app, ["diaspora", "show", "JM"]).output

    async def audited() -> list[str]:
        db = Database(cli_env.effective_database_url)
        try:
            return [a.action for a in await _rows(db, AuditRow) if a.subject == diaspora.SUBJECT]
        finally:
            await db.dispose()
    assert asyncio.run(audited()) == ["diaspora.apply", "diaspora.apply", "diaspora.rollback"]
    assert os.environ["EDITOR"] == str(editor)


async def test_the_preparation_workers_are_restarted_with_the_new_map() -> None:
    files = Classifier.from_dir(PLAYBOOKS)
    preparer = Preparer(files, workers=1)
    now = utcnow()
    batch = [GlobalIncident(incident_id=f"i{n}", feed_id="f", kind=FeedKind.RSS, title=JAMAICA,
                            published=now, first_seen=now, content_hash=f"h{n}") for n in range(80)]
    values = [i.model_dump_json().encode() for i in batch]
    try:
        before = await preparer.start(values, batch).result()
        assert not any("haitian" in p.classification.communities for p in before)
        stored = diaspora.InForce(2, jamaica_links(FILE_TEXT, "black, christian, haitian"))
        new = diaspora.classifier_for(files.lexicon, stored, current=files)
        assert new is not None
        preparer.use(new)
        running = preparer._pool
        assert running is not None
        after = preparer.start(values, batch)
        assert after.pool is running and len(after.futures) == 1
        await asyncio.wrap_future(after.futures[0])  # prepared in the new worker, not here
        assert all("haitian" in p.classification.communities for p in await after.result())
    finally:
        preparer.close()


async def test_a_changed_file_is_seeded_again_only_until_an_officer_edits(db: Database,
                                                                          tmp_path: Path) -> None:
    directory = tmp_path / "playbooks"
    directory.mkdir()
    for name in ("communities.yaml", "incident_types.yaml"):
        (directory / name).write_text((PLAYBOOKS / name).read_text(encoding="utf-8"), encoding="utf-8")
    (directory / "diaspora.yaml").write_text(FILE_TEXT, encoding="utf-8")
    async with db.transaction() as session:
        assert await diaspora.seed(session, directory) == 1
        (directory / "diaspora.yaml").write_text(jamaica_links(FILE_TEXT, "black"), encoding="utf-8")
        assert await diaspora.seed(session, directory) == 2  # still the default: follows the file
        assert (await diaspora.latest(session)).note.startswith("updated from playbooks/")
        assert await diaspora.save_draft(session, OFFICER, FILE_TEXT, note="officer's map",
                                         base_version=2, known=known()) == 3
        (directory / "diaspora.yaml").write_text(jamaica_links(FILE_TEXT, "black, haitian"),
                                                 encoding="utf-8")
        assert await diaspora.seed(session, directory) is None  # the officers' map stays
        assert (await diaspora.latest(session)).version == 3
