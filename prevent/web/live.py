"""GET /alerts/stream: server-sent events telling open queues that alerts changed.

This console **polls the database once a second** rather than consuming
``prevent.alerts.v1``: the database is what the queue renders, every console replica
sees the same thing without a broker connection, and a second's delay is fine for
people. One cheap query (count and newest change) per connected browser per second.
Each event carries only a version stamp; the page then fetches the rows it shows.

``GET /alerts/{id}/stream`` does the same for one alert's page: its stamp changes with the
alert (another inspector's decision), its notices (sent, delivered, failed, acknowledged),
patrols, visits, audit entries and new reports; the page then fetches
``/alerts/{id}/situation`` (or, after a decision, the whole page).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select

from prevent.platform.storage.tables import AlertRow
from prevent.users import Principal
from prevent.web import deps, situation
from prevent.web.security import gate

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


async def alert_events(request: Request, alert_id: str) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    last = None
    loop = asyncio.get_running_loop()
    until = loop.time() + MAX_STREAM_SECONDS
    while loop.time() < until and not await request.is_disconnected():
        async with deps.db(request).transaction() as session:
            current = await situation.stamp(session, alert_id)
        if current != last:
            data = json.dumps({"stamp": current, "revision": current.split(":", 1)[0],
                               "initial": last is None})
            yield f"event: alert\ndata: {data}\n\n"
            last = current
        await asyncio.sleep(POLL_SECONDS)


@router.get("/alerts/{alert_id}/stream")
async def alert_stream(request: Request, alert_id: str, _p: Principal = Depends(gate)
                       ) -> StreamingResponse:
    return StreamingResponse(alert_events(request, alert_id[:64]), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
