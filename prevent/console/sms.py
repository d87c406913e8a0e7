"""What the SMS gateway posts back: ``POST /sms/inbound`` forwards replies ("ACK 123456", or
a bare "ACK", acknowledges the matching notice); ``POST /sms/status`` delivery receipts
(delivered, failed, undelivered) for the notices it accepted.

Authenticity is checked before anything is read into the system:
* json gateways sign the raw body with ``sms_inbound_secret`` (``Prevent-Signature``,
  the same scheme as our webhooks) and send ``{"from": ..., "text": ...}``;
* Twilio-compatible gateways send a form (``From``, ``Body``) signed with
  ``X-Twilio-Signature``: base64 HMAC-SHA1 of the public URL plus the sorted form
  fields, keyed with the auth token (``sms_gateway_token``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from notifiers.channels.http import SIGNATURE_HEADER, verify
from prevent import acks
from prevent.console import deps

router = APIRouter()
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


async def gateway_message(request: Request, path: str) -> dict[str, str] | Response:
    """The fields the SMS gateway posted to ``path``, once its signature is checked; or the
    response refusing them (not configured, bad signature, not the expected JSON)."""
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
        return params
    secret = settings.sms_inbound_secret.get_secret_value() if settings.sms_inbound_secret else None
    if not secret:
        return JSONResponse({"error": "inbound SMS is not configured"}, status_code=503)
    if not verify(secret, body, request.headers.get(SIGNATURE_HEADER)):
        return JSONResponse({"error": "bad signature"}, status_code=403)
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return JSONResponse({"error": "expected a JSON object"}, status_code=422)
    return {str(k): "" if v is None else str(v) for k, v in data.items()}


@router.post("/sms/inbound")
async def sms_inbound(request: Request) -> Response:
    fields = await gateway_message(request, "/sms/inbound")
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
