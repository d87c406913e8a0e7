"""What the SMS gateway posts back: ``POST /sms/inbound`` forwards replies ("ACK 123456", or
a bare "ACK", acknowledges the matching notice); ``POST /sms/status`` delivery receipts
(delivered, failed, undelivered) for the notices it accepted.

Authenticity is checked before anything is read into the system:
* json gateways sign the raw body with ``sms_inbound_secret`` (``Prevent-Signature``,
  the same scheme as our webhooks) and send ``{"from": ..., "text": ...}``;
* Twilio-compatible gateways send a form (``From``, ``Body``) signed with
  ``X-Twilio-Signature``: base64 HMAC-SHA1 of the public URL plus the sorted form
  fields, keyed with the auth token (``sms_gateway_token``).

A signed reply is taken once: a replay cache (``ReplayCache``, in this process's memory)
remembers each one for longer than a signature stays valid, and a second copy gets 409 and
changes nothing (a bare "ACK" replayed would otherwise acknowledge whatever notice is now
that number's latest). Delivery receipts need no cache: one changes a notice only while it
is still ``sent``, once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from notifiers.channels.http import SIGNATURE_HEADER, SIGNATURE_TOLERANCE_SECONDS, verify
from prevent.partners import acks
from prevent.web import deps

router = APIRouter()
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class ReplayCache:
    """Digests of the signed messages taken in the last ``ttl`` seconds (at most ``size``)."""

    def __init__(self, *, ttl: float = 2 * SIGNATURE_TOLERANCE_SECONDS + 60,
                 size: int = 100_000) -> None:
        self.ttl, self.size = ttl, size
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, digest: str, *, now: float | None = None) -> bool:
        """True, and remembered, the first time ``digest`` is seen within ``ttl``."""
        now = time.monotonic() if now is None else now
        while self._seen and (now - next(iter(self._seen.values())) > self.ttl
                              or len(self._seen) >= self.size):
            self._seen.popitem(last=False)
        if digest in self._seen:
            return False
        self._seen[digest] = now
        return True


def _replays(request: Request) -> ReplayCache:
    cache = getattr(request.app.state, "sms_replays", None)
    if cache is None:
        cache = request.app.state.sms_replays = ReplayCache()
    return cache


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


REPLAYED = "this signed message was already received"


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


async def gateway_message(request: Request, path: str, *, once: bool = False
                          ) -> dict[str, str] | Response:
    """The fields the SMS gateway posted to ``path``, once its signature is checked; or the
    response refusing them (not configured, bad signature, not the expected JSON, or with
    ``once``, a replay of a message already taken)."""
    settings = deps.settings(request)
    body = await request.body()
    if settings.sms_gateway_kind == "twilio":
        token = settings.sms_gateway_token.get_secret_value() if settings.sms_gateway_token else None
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        url = settings.public_base_url.rstrip("/") + path
        if not token:
            return JSONResponse({"error": "the SMS gateway is not configured"}, status_code=503)
        if not hmac.compare_digest(twilio_signature(token, url, params),
                                   request.headers.get("X-Twilio-Signature", "")):
            return JSONResponse({"error": "bad signature"}, status_code=403)
        if once and not _replays(request).first_time(
                _digest(url, *(f"{k}={params[k]}" for k in sorted(params)))):
            return JSONResponse({"error": REPLAYED}, status_code=409)
        return _readable(params)
    secret = settings.sms_inbound_secret.get_secret_value() if settings.sms_inbound_secret else None
    if not secret:
        return JSONResponse({"error": "inbound SMS is not configured"}, status_code=503)
    header = request.headers.get(SIGNATURE_HEADER)
    if not verify(secret, body, header):
        return JSONResponse({"error": "bad signature"}, status_code=403)
    # The signed content is the timestamp and the body: the same two again are a replay
    # (whatever else the header carries).
    stamp = next((p.strip()[2:] for p in (header or "").split(",") if p.strip().startswith("t=")), "")
    if once and not _replays(request).first_time(_digest(path, stamp, body)):
        return JSONResponse({"error": REPLAYED}, status_code=409)
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return JSONResponse({"error": "expected a JSON object"}, status_code=422)
    return _readable({str(k): "" if v is None else str(v) for k, v in data.items()})


def _readable(fields: dict[str, str]) -> dict[str, str] | Response:
    """The fields, or 422 when one holds a NUL character (U+0000): no sender, reply or
    message id has one, and PostgreSQL cannot compare text with it (a server error)."""
    if any("\x00" in k or "\x00" in v for k, v in fields.items()):
        return JSONResponse({"error": "a field holds a NUL character"}, status_code=422)
    return fields


@router.post("/sms/inbound")
async def sms_inbound(request: Request) -> Response:
    fields = await gateway_message(request, "/sms/inbound", once=True)
    if isinstance(fields, Response):
        return fields
    twilio = deps.settings(request).sms_gateway_kind == "twilio"
    if twilio:
        sender, text = fields.get("From", ""), fields.get("Body", "")
    elif "from" in fields and "text" in fields:
        sender, text = fields["from"], fields["text"]
    else:
        return JSONResponse({"error": 'expected JSON {"from": ..., "text": ...}'}, status_code=422)
    async with deps.db(request).transaction() as session:
        notice = await acks.notice_for_sms_reply(session, sender, text)
        outcome = await acks.acknowledge(session, notice.notice_id, via="sms") if notice else None
    deps.kick(request)
    if twilio:
        return Response(TWIML_EMPTY, media_type="application/xml")
    return JSONResponse({"acknowledged": notice.notice_id if notice else None,
                         "new": bool(outcome and outcome.newly)})


@router.post("/sms/status")
async def sms_status(request: Request) -> Response:
    """A delivery receipt: Twilio's status callback (``MessageSid``, ``MessageStatus``,
    ``ErrorCode``) or a json gateway's ``{"id": ..., "status": ..., "error": ...}``."""
    fields = await gateway_message(request, "/sms/status")
    if isinstance(fields, Response):
        return fields
    twilio = deps.settings(request).sms_gateway_kind == "twilio"
    keys = ("MessageSid", "MessageStatus", "ErrorCode") if twilio else ("id", "status", "error")
    ref, status, detail = (fields.get(k, "") for k in keys)
    if not ref or not status:
        return JSONResponse({"error": f"expected {keys[0]} and {keys[1]}"}, status_code=422)
    async with deps.db(request).transaction() as session:
        notice = await acks.delivery_receipt(session, ref, status, detail)
    deps.kick(request)
    if twilio:
        return Response(TWIML_EMPTY, media_type="application/xml")
    return JSONResponse({"notice": notice.notice_id if notice else None,
                         "state": notice.state if notice else None})
