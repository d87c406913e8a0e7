"""GET /alerts/stream: server-sent events telling open queues that alerts changed.

This console **polls the database once a second** rather than consuming
``prevent.alerts.v1``: the database is what the queue renders, every console replica
sees the same thing without a broker connection, and a second's delay is fine for
people. One cheap query (count and newest change) per connected browser per second.
Each event carries only a version stamp; the page then fetches the rows it shows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select

from prevent.console import deps
from prevent.console.security import gate
from prevent.storage.tables import AlertRow
from prevent.users import Principal

router = APIRouter()
POLL_SECONDS = 1.0
MAX_STREAM_SECONDS = 600.0  # EventSource reconnects; a bounded stream re-checks the session
RETRY_MS = 2000


async def stamp(request: Request) -> str:
    async with deps.db(request).transaction() as session:
        count, newest = (await session.execute(
            select(func.count(), func.max(AlertRow.updated_at)))).one()
    return f"{count}:{newest.isoformat() if newest else ''}"


async def events(request: Request) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    last = None
    loop = asyncio.get_running_loop()
    until = loop.time() + MAX_STREAM_SECONDS
    while loop.time() < until and not await request.is_disconnected():
        current = await stamp(request)
        if current != last:
            yield f"event: alerts\ndata: {json.dumps({'stamp': current, 'initial': last is None})}\n\n"
            last = current
        await asyncio.sleep(POLL_SECONDS)


@router.get("/alerts/stream")
async def stream(request: Request, _p: Principal = Depends(gate)) -> StreamingResponse:
    return StreamingResponse(events(request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
