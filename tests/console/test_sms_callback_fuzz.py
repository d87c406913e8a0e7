"""A bounded property run of the SMS callback parser (`/sms/inbound`, `/sms/status`): whatever
a gateway sends, signed or not, the answer is a refusal or an outcome, never a server error,
and a replayed reply changes nothing."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from notifiers.channels.http import SIGNATURE_HEADER, sign

from .conftest import Console

SECRET = "fuzz-inbound-secret"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
FIELDS = st.fixed_dictionaries({}, optional={
    "from": st.text(max_size=30), "text": st.text(max_size=60), "id": st.text(max_size=30),
    "status": st.sampled_from(["delivered", "failed", "undelivered", "sent", ""]) | st.text(max_size=12),
    "error": st.text(max_size=20)})
BODIES = (st.builds(lambda v: json.dumps(v).encode(), JSON | FIELDS)
          | st.binary(max_size=300))


@pytest.fixture
def gateway(console: Console) -> Console:
    state = console.app.state.console
    state.settings = state.settings.model_copy(update={"sms_inbound_secret": SecretStr(SECRET)})
    return console


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=BODIES, path=st.sampled_from(["/sms/inbound", "/sms/status"]), signed=st.booleans())
async def test_any_callback_gets_an_answer_not_a_server_error(gateway: Console, body: bytes,
                                                              path: str, signed: bool) -> None:
    headers = {SIGNATURE_HEADER: sign(SECRET, body, int(time.time()))} if signed else {}
    gateway.app.state.sms_replays = None  # each example starts with no reply taken
    async with gateway.client() as client:
        first = await client.post(path, content=body, headers=headers)
        again = await client.post(path, content=body, headers=headers)
    if not signed:
        assert first.status_code == again.status_code == 403
        return
    assert first.status_code in (200, 422), (first.status_code, first.text)
    if path == "/sms/inbound":
        assert again.status_code == 409  # the same signed reply is taken once
    else:  # receipts are idempotent: a repeat changes nothing and is answered as before
        assert again.status_code == first.status_code
