"""WebSub callback routes: ``GET /websub/{callback_id}`` answers a hub's verification of
intent, ``POST /websub/{callback_id}`` receives a content push.

The protocol logic is :mod:`prevent.feeds.websub`; pushes go to the watcher running in
this process (``ConsoleState.websub``), through the same dedupe-and-publish path as
polls. A console without an in-process watcher (production runs them apart) answers 202
and leaves the watcher a note; the watcher polls that feed within seconds.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from prevent.feeds import websub
from prevent.web import deps

router = APIRouter()
log = logging.getLogger("prevent.websub")
PUSH_TIMEOUT_SECONDS = 20.0


MAX_LEASE_SECONDS = 366 * 86400  # a longer lease is refused: it would overflow the schedule


@router.get("/websub/{callback_id}", include_in_schema=False)
async def verify(callback_id: str, request: Request) -> Response:
    lease = request.query_params.get("hub.lease_seconds")
    if lease is not None and not (lease.isdigit() and int(lease) <= MAX_LEASE_SECONDS):
        return PlainTextResponse(f"hub.lease_seconds must be a whole number up to "
                                 f"{MAX_LEASE_SECONDS}", status_code=400)
    challenge = await websub.verify_intent(deps.db(request), callback_id, request.query_params)
    if challenge is None:
        return PlainTextResponse("no such pending subscription", status_code=404)
    return PlainTextResponse(challenge)


@router.post("/websub/{callback_id}", include_in_schema=False)
async def push(callback_id: str, request: Request) -> Response:
    db = deps.db(request)
    sub = await websub.subscription(db, callback_id)
    if sub is None or sub.state != "active":
        return PlainTextResponse("no such subscription", status_code=404)
    body = await _body(request)
    if body is None:
        return PlainTextResponse("too large", status_code=413)
    if not websub.valid_signature(sub.secret, body, request.headers.get("x-hub-signature")):
        # Never parsed, never published. (WebSub lets a subscriber answer 2xx here; a
        # clear refusal is more useful to an operator than hiding it from the hub.)
        log.warning("feed_id=%s websub push with a missing or bad signature refused", sub.feed_id)
        return PlainTextResponse("bad signature", status_code=403)
    receiver = getattr(deps.state(request), "websub", None)
    if receiver is None:  # the watcher runs in another process: it polls the feed now
        await websub.note_push(db, callback_id)
        return PlainTextResponse("accepted: the feed watcher fetches the feed now", status_code=202)
    try:
        async with asyncio.timeout(PUSH_TIMEOUT_SECONDS):
            await receiver(sub.feed_id, body, dict(request.headers))
    except LookupError:
        return PlainTextResponse("feed no longer watched", status_code=410)
    except Exception as exc:  # noqa: BLE001 - the hub retries a 5xx; polling covers the rest
        log.warning("feed_id=%s websub push not processed: %s", sub.feed_id, exc)
        return PlainTextResponse("not processed", status_code=503)
    return Response(status_code=204)


async def _body(request: Request) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > websub.MAX_PUSH_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
