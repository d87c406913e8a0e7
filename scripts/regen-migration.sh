#!/usr/bin/env bash
# Development only, until the first release: regenerate the initial migration from
# prevent/platform/storage/tables.py. After a release, add new revisions instead.
set -euo pipefail
cd "$(dirname "$0")/.."
# Databases have been upgraded past 0001 (0002 onwards): regenerating it would strand them.
if ls prevent/platform/migrations/versions/ | grep -q '^000[2-9]'; then
  echo "later revisions exist: add a new one (alembic revision --autogenerate) instead" >&2
  exit 1
fi
tmp=$(mktemp -d)
rm -f prevent/platform/migrations/versions/0001_initial_schema.py
.venv/bin/python - "$tmp/gen.db" <<'PY'
import asyncio, sys
from alembic import command
from prevent.platform.storage.db import Database, alembic_config

async def main(path: str) -> None:
    db = Database(f"sqlite+aiosqlite:///{path}")
    def generate(conn):
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
    async with db.engine.begin() as conn:
        await conn.run_sync(generate)
    await db.dispose()

asyncio.run(main(sys.argv[1]))
PY
rm -rf "$tmp"
