"""A diaspora map edit reaches a running rules stage over the real broker without a restart
(issue 21, point 6): the map is seeded as version 1 on first start; an officer's version 2
links a further community to Jamaica, and later reports of a disaster there are classified
with it (in the preparation worker too); a rollback takes it away again."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from sqlalchemy import select
from test_diaspora_versions import FILE_TEXT, jamaica_links

from prevent.cli.services import running_system
from prevent.contracts import INCIDENTS, GlobalIncident, stable_id, utcnow
from prevent.platform.messaging import publish
from prevent.platform.storage.tables import IncidentRow
from prevent.rules.playbooks import diaspora_versions as diaspora
from prevent.users import Principal, Role

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
OFFICER = Principal("officer", Role.ENGAGEMENT_OFFICER)
_n = itertools.count()


def report() -> GlobalIncident:
    now = utcnow()
    title = f"Hurricane Melissa devastates Jamaica, killing 19 (report {next(_n)})"
    return GlobalIncident(incident_id=stable_id("inc", title), feed_id="test", kind="rss",
                          title=title, published=now, first_seen=now, content_hash=stable_id("h", title))


async def classified_with(ctx, community: str, present: bool, limit: float = 40.0) -> None:
    """Publish reports until one is stored with (or without) ``community``: the consumer
    switches maps when the announcement arrives, so the first may still use the old one."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        item = report()
        await publish(ctx.broker, INCIDENTS, item, key=item.incident_id, event_id=item.incident_id,
                      source="test")
        for _ in range(10):
            await asyncio.sleep(0.3)
            async with ctx.db.transaction() as session:
                row = (await session.execute(select(IncidentRow.classification).where(
                    IncidentRow.incident_id == item.incident_id))).scalar()
            if row is not None:
                if (community in row["communities"]) == present:
                    return
                break
        assert asyncio.get_running_loop().time() < deadline, f"{community} never {present}"


async def test_a_saved_map_is_used_by_the_running_rules_stage(settings, system_engine) -> None:
    config = settings.model_copy(update={"playbooks_dir": REPO / "playbooks", "demo": True,
                                         "kafka_bootstrap": system_engine.bootstrap or None})
    async with running_system(config, services=("rules",), feeds=[]) as system:
        ctx = system.ctx
        async with ctx.db.transaction() as session:
            assert [v.version for v in await diaspora.history(session)] == [1]  # seeded
        await classified_with(ctx, "haitian", present=False)
        known = diaspora.known_communities(REPO / "playbooks")
        async with ctx.db.transaction() as session:
            assert await diaspora.save_draft(session, OFFICER, jamaica_links(FILE_TEXT, "black, haitian"),
                                             note="Haitian families", base_version=1, known=known) == 2
        ctx.relay.kick()
        await classified_with(ctx, "haitian", present=True)
        async with ctx.db.transaction() as session:
            assert await diaspora.rollback(session, OFFICER, 1, note="undo", base_version=2,
                                           known=known) == 3
        ctx.relay.kick()
        await classified_with(ctx, "haitian", present=False)
