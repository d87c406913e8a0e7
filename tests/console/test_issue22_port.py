"""Issue 22, defect 1: `prevent up --port 8101` must put 8101 (not 8000) in acknowledgement
links, the SMS status URL and the sign-in hint; an explicit PREVENT_PUBLIC_BASE_URL wins."""

from __future__ import annotations

from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from prevent.cli import main as cli
from prevent.partners.acklinks import AckLinks
from prevent.platform.config import Settings, get_settings


def _run_up(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> Settings:
    seen: dict[str, Any] = {}

    @asynccontextmanager
    async def fake_system(settings: Settings, **_kw: Any):
        seen["settings"] = settings
        yield SimpleNamespace(console_state=lambda: None)

    monkeypatch.setattr("prevent.cli.services.running_system", fake_system)
    monkeypatch.setattr("prevent.web.app.create_app", lambda state: state)
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: seen.update(app=app, kw=kw))
    result = CliRunner().invoke(cli.app, ["up", *args])
    assert result.exit_code == 0, result.output
    assert seen["kw"]["port"] == 8101

    import asyncio

    async def enter() -> None:
        async with seen["app"](None):
            pass

    asyncio.run(enter())
    return seen["settings"]


def test_up_port_reaches_links_sms_status_and_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREVENT_PUBLIC_BASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        settings = _run_up(monkeypatch, ["--port", "8101"])
    finally:
        get_settings.cache_clear()
    assert settings.public_base_url == "http://127.0.0.1:8101"
    link = AckLinks.from_settings(settings.model_copy(update={"secret_key": SecretStr("k" * 32)})).url("n1")
    assert link.startswith("http://127.0.0.1:8101/ack/"), link


def test_explicit_public_base_url_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREVENT_PUBLIC_BASE_URL", "https://prevent.example.org")
    get_settings.cache_clear()
    try:
        settings = _run_up(monkeypatch, ["--port", "8101"])
    finally:
        get_settings.cache_clear()
    assert settings.public_base_url == "https://prevent.example.org"


def test_bound_settings_brackets_ipv6_and_maps_wildcard() -> None:
    base = Settings()
    # S104: the wildcard address is the input under test; nothing is bound
    assert cli.bound_settings(base, "0.0.0.0", 9000).public_base_url == "http://127.0.0.1:9000"  # noqa: S104
    assert cli.bound_settings(base, "::1", 9000).public_base_url == "http://[::1]:9000"
