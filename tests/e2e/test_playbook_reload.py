"""Playbook edits reach a running rules consumer over the real broker, atomically:
an invalid edit is rejected with file:line and changes nothing; a valid one takes
effect for the next incident without a restart."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from prevent.cli.services import running_system
from prevent.contracts import INCIDENTS, GlobalIncident, stable_id, utcnow
from prevent.platform.messaging import publish
from prevent.platform.storage.tables import AlertRow
from prevent.platform.yamlsource import SourceError
from prevent.rules.playbooks import store

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]

NEW_PLAYBOOK = """\
id: gurdwara-vandalism
title: Vandalism of a gurdwara (test)
owner: tests
match:
  communities: {any: [sikh]}
  incident_types: [vandalism]
  min_severity: 1
response:
  notify:
    - communities: [$matched]
      channels: [email]
"""


def incident(title: str, summary: str) -> GlobalIncident:
    now = utcnow()
    return GlobalIncident(incident_id=stable_id("inc", title), feed_id="test", kind="rss",
                          title=title, summary=summary, published=now, first_seen=now,
                          content_hash=stable_id("h", title, summary))


async def wait_until(predicate, limit: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def test_playbook_edits_swap_atomically_in_the_running_consumer(settings, system_engine,
                                                                     tmp_path: Path) -> None:
    playbooks = tmp_path / "playbooks"
    shutil.copytree(REPO / "playbooks", playbooks)
    config = settings.model_copy(update={"playbooks_dir": playbooks, "demo": True,
                                         "kafka_bootstrap": system_engine.bootstrap or None})
    async with running_system(config, services=("rules",), feeds=[]) as system:
        ctx = system.ctx
        before = dict(ctx.playbooks.compiled.source.versions)

        (playbooks / "gurdwara-vandalism.yaml").write_text(NEW_PLAYBOOK.replace("min_severity: 1",
                                                                                "min_severity: high"))
        with pytest.raises(SourceError) as rejected:
            async with ctx.db.transaction() as session:
                await store.apply_directory(session, playbooks, author="officer")
        assert f"{playbooks / 'gurdwara-vandalism.yaml'}:7: match.min_severity" in str(rejected.value)
        await asyncio.sleep(1.5)
        assert dict(ctx.playbooks.compiled.source.versions) == before

        (playbooks / "gurdwara-vandalism.yaml").write_text(NEW_PLAYBOOK)
        async with ctx.db.transaction() as session:
            changed = await store.apply_directory(session, playbooks, author="officer",
                                                  note="watch gurdwaras")
        assert changed == {"gurdwara-vandalism": 1}

        async def swapped() -> bool:
            return ctx.playbooks.compiled.source.get("gurdwara-vandalism") is not None
        await wait_until(swapped)

        report = incident("Gurdwara vandalised with hateful graffiti",
                          "Worshippers found slogans spray-painted on the gurdwara walls.")
        await publish(ctx.broker, INCIDENTS, report, key=report.incident_id,
                      event_id=report.incident_id, source="test")

        async def alert_raised() -> bool:
            async with ctx.db.transaction() as session:
                rows = (await session.execute(select(AlertRow).where(
                    AlertRow.playbook_id == "gurdwara-vandalism"))).scalars().all()
            return len(rows) == 1 and rows[0].playbook_version == 1
        await wait_until(alert_raised)
