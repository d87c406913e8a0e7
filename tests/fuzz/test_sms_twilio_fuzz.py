"""The SMS callbacks as a Twilio-compatible gateway posts them (a form signed with
``X-Twilio-Signature``): whatever the form holds, signed or not, the answer is a refusal or an
outcome, never a server error. (The JSON gateway's callbacks: tests/console/test_sms_callback_fuzz.py.)
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from console.conftest import Console
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import SecretStr

from prevent.web.sms_replies import twilio_signature

from .conftest import fuzz_settings

TOKEN = "fuzz-twilio-token"
BASE = "https://console.example"
FIELDS = st.dictionaries(
    st.sampled_from(["From", "Body", "MessageSid", "MessageStatus", "ErrorCode", "To", "x"])
    | st.text(max_size=8),
    st.sampled_from(["ACK", "ack 123456", "STOP", "+447700900123", "delivered", "failed",
                     "undelivered", "30003", "", "\x00", "ACK " + "9" * 5000]) | st.text(max_size=40),
    max_size=6)
BODIES = st.builds(lambda f: urlencode(f).encode(), FIELDS) | st.binary(max_size=200)


@fuzz_settings(60)
@given(body=BODIES, path=st.sampled_from(["/sms/inbound", "/sms/status"]), signed=st.booleans())
@example(body=b"From=%2B447700900123&Body=ACK&From=x", path="/sms/inbound", signed=True)
@example(body=b"%ff%fe=%00", path="/sms/status", signed=True)
async def test_any_twilio_callback_gets_an_answer(console: Console, body: bytes, path: str,
                                                  signed: bool) -> None:
    state = console.app.state.console
    state.settings = state.settings.model_copy(update={
        "sms_gateway_kind": "twilio", "sms_gateway_token": SecretStr(TOKEN), "public_base_url": BASE})
    console.app.state.sms_replays = None
    params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signed:
        headers["X-Twilio-Signature"] = twilio_signature(TOKEN, BASE + path, params)
    async with console.client() as client:
        first = await client.post(path, content=body, headers=headers)
        again = await client.post(path, content=body, headers=headers)
    if not signed:
        assert first.status_code == again.status_code == 403
        return
    assert first.status_code in (200, 422), (first.status_code, first.text)
    if path == "/sms/inbound":
        assert again.status_code == 409, again.text  # a signed reply is taken once
    else:
        assert again.status_code == first.status_code
