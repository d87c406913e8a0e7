"""Issue 22, defect 6: after an edit in the console (version 2), `playbooks explain` and
`playbooks test --input` judge the version in force (not the files on disk, version 1), and
`playbooks apply` refuses to undo the edit with the older files (``--force`` to do it)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prevent.cli.main import app
from prevent.platform.config import get_settings
from prevent.platform.storage.db import Database
from prevent.rules.playbooks import store

PID = "place-of-worship-attack"
runner = CliRunner()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("PREVENT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("PREVENT_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _edit_in_console(settings) -> int:
    """What the console's editor stores: a new version by an officer, from the stored text."""
    async def go() -> int:
        db = Database(settings.effective_database_url)
        await db.upgrade()
        try:
            async with db.transaction() as session:
                row = {r.playbook_id: r for r in await store.latest_versions(session)}[PID]
                text = row.source.replace("priority: 80", "priority: 81")
                assert text != row.source
                changed = await store.apply_sources(session, [(f"{PID}.yaml", text)],
                                                    author="officer", note="raise priority")
                return changed[PID]
        finally:
            await db.dispose()
    return asyncio.run(go())


def test_apply_refuses_to_undo_a_console_edit_and_explain_judges_it(cli_env, tmp_path: Path) -> None:
    first = runner.invoke(app, ["playbooks", "apply"])
    assert first.exit_code == 0, first.output
    version = _edit_in_console(cli_env)
    assert version == 2

    again = runner.invoke(app, ["playbooks", "apply"])
    assert again.exit_code == 1
    assert f"is version 1 of {PID}, but version 2 (by officer" in again.output
    assert "raise priority" in again.output and "--force" in again.output

    item = tmp_path / "item.json"
    item.write_text(json.dumps({"id": "x1", "title": "Arson attack on a mosque injures worshippers",
                                "summary": "", "published": "2026-01-01T00:00:00+00:00"}))
    explained = runner.invoke(app, ["playbooks", "explain", str(item), "--playbook", PID])
    assert explained.exit_code == 0, explained.output
    assert f"{PID} v2" in explained.output
    from_files = runner.invoke(app, ["playbooks", "explain", str(item), "--playbook", PID,
                                     "--from-files"])
    assert f"{PID} v0" in from_files.output

    items = tmp_path / "items.jsonl"
    items.write_text(item.read_text() + "\n")
    tested = runner.invoke(app, ["playbooks", "test", "--input", str(items)])
    assert tested.exit_code == 0, tested.output
    assert "versions in force in the database" in tested.output and f"{PID} v2" in tested.output

    classified = runner.invoke(app, ["classify", str(items)])
    assert classified.exit_code == 0, classified.output
    assert "versions in force in the database" in classified.output and f"{PID} v2" in classified.output
    assert PID in classified.output.splitlines()[-1]  # the JSON line names what fired
    files = runner.invoke(app, ["classify", str(items), "--from-files"])
    assert "judging the playbook files" in files.output

    forced = runner.invoke(app, ["playbooks", "apply", "--force"])
    assert forced.exit_code == 0 and f"'{PID}': 3" in forced.output, forced.output
