"""Administrative operations behind the CLI: registry import/export, audit listing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prevent import audit
from prevent.contracts import utcnow
from prevent.partners import checks as registry_checks
from prevent.partners import site_diasporas
from prevent.partners.registry import (
    apply_registry,
    export_registry,
    known_zone_ids,
    registry_yaml,
)
from prevent.partners.registry import renew_consent as registry_renew_consent
from prevent.platform.config import Settings
from prevent.platform.storage.db import open_db as open_db  # re-exported: commands and tests use it


async def import_file(settings: Settings, path: Path, actor: str) -> dict[str, int]:
    async with open_db(settings) as db, db.transaction() as session:
        places = await site_diasporas.places_in_force(session, settings.playbooks_dir)
        registry = registry_checks.parse(path, await known_zone_ids(session), settings.playbooks_dir,
                                         places=places)
        counts = await apply_registry(session, registry)
        await audit.record(session, actor=actor, action="registry.import", subject="registry",
                           after=counts, reason=f"import of {path.name}")
        return counts


async def renew_consent(settings: Settings, contact_id: str, *, note: str, actor: str) -> None:
    async with open_db(settings) as db, db.transaction() as session:
        await registry_renew_consent(session, contact_id, note=note, actor=actor)


async def export_yaml(settings: Settings) -> str:
    async with open_db(settings) as db, db.transaction() as session:
        return registry_yaml(await export_registry(session))


async def print_audit(settings: Settings, alert_id: str | None, since: timedelta | None) -> None:
    async with open_db(settings) as db, db.transaction() as session:
        rows = await audit.entries(session, subject=alert_id,
                                   since=utcnow() - since if since else None)
    for row in rows:
        reason = f" — {row.reason}" if row.reason else ""
        if scope := audit.left_out(row.after):
            reason += f" [{scope}]"
        print(f"{row.at:%Y-%m-%d %H:%M:%S} {row.actor:<16} {row.action:<24} {row.subject}"
              f"{reason}")
