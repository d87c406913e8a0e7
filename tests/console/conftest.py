"""A console app on a migrated database with one user per role, signed in via the form."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pyotp
import pytest
from fastapi import FastAPI

from prevent import users
from prevent.partners.registry import apply_registry, parse_registry
from prevent.platform.config import Settings
from prevent.platform.demo import SAMPLE_PARTNERS
from prevent.platform.storage.db import Database
from prevent.platform.storage.tables import UserRow
from prevent.rules.playbooks import store
from prevent.users import Role
from prevent.web.app import ConsoleState, create_app

PASSWORD = "a long enough test password"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
SIGNIN_TOKEN = re.compile(r'name="signin_token" value="([^"]*)"')


async def signin_form(client: httpx.AsyncClient, **fields: str) -> dict[str, str]:
    """``fields`` plus the pre-session token of a freshly fetched sign-in form (its cookie is
    now in ``client``): what a browser posts to ``/signin``."""
    page = await client.get("/signin")
    match = SIGNIN_TOKEN.search(page.text)
    assert match and match.group(1), "the sign-in form carries a pre-session token"
    return {"next": "/", **fields, "signin_token": match.group(1)}


async def post_signin(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    return await client.post("/signin", data=await signin_form(client, **fields))


@dataclass
class Console:
    app: FastAPI
    db: Database
    key: str = "test-secret-key-not-for-production"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://console")

    async def signed_in(self, role: Role) -> tuple[httpx.AsyncClient, str]:
        """A client holding a session cookie for the role's user, and its CSRF token (the
        administrator, created on first use, signs in with a one-time code)."""
        name = role.value.replace("_", "-")
        form = {"name": name, "password": PASSWORD}
        if role is Role.ADMIN:
            form["code"] = pyotp.TOTP(await self._admin_secret(name)).now()
        client = self.client()
        response = await post_signin(client, **form)
        assert response.status_code == 303, response.text
        page = await client.get("/")
        match = CSRF_META.search(page.text)
        assert match and match.group(1), "signed-in pages carry the CSRF token"
        return client, match.group(1)

    async def _admin_secret(self, name: str) -> str:
        async with self.db.transaction() as session:
            row = await session.get(UserRow, name)
            if row is None:
                await users.add_user(session, name, Role.ADMIN, PASSWORD, actor="test")
                row = await session.get(UserRow, name)
            if row.totp_secret is None:
                row.totp_secret = users.seal_totp(self.key, pyotp.random_base32())
            secret = users.open_totp(self.key, row.totp_secret)
            assert secret is not None
            return secret


@pytest.fixture
async def console(db: Database, settings: Settings) -> AsyncIterator[Console]:
    async with db.transaction() as session:
        for role in Role:
            if role is not Role.ADMIN:  # admins need TOTP: tested on their own
                await users.add_user(session, role.value.replace("_", "-"), role, PASSWORD,
                                     actor="test")
        await store.apply_directory(session, settings.playbooks_dir, author="test")
        await apply_registry(session, parse_registry(SAMPLE_PARTNERS))
    app = create_app(None)  # type: ignore[arg-type] - state set directly, no lifespan
    app.state.console = ConsoleState(db=db, settings=settings)
    yield Console(app, db, settings.secret_key.get_secret_value() if settings.secret_key else "")
