"""Issue 22, defect 4: a partner CSV import lists every problem of the file in one upload
(schema errors of the site and of the contact in the same row, unknown communities, unknown
zones, contact columns without a contact id), names the file by its own name, and says
what is wrong with a phone number in words, not as a regular expression. The same from
`prevent partners import` and in the site editor."""

from __future__ import annotations

import re
from contextlib import aclosing
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import func, select

from prevent.cli import admin
from prevent.partners.registry import PHONE_HELP
from prevent.platform.config import Settings
from prevent.platform.storage.tables import Site
from prevent.platform.yamlsource import SourceError
from prevent.users import Role
from prevent.web.boards import upload_name

from .conftest import Console

HEADER = ("site_id,site_name,communities,municipality,lat,zone_id,contact_id,contact_name,"
          "email,phone,channels,consent\n")
# Row 2: a bad latitude (site), a bad phone (contact) and a misspelt community, all in one row.
# Row 3: an unknown patrol zone, and contact columns without a contact id.
BAD = HEADER + ("s-new,New Centre,muslin,Town,95,,c-1,Ana,ana@example.org,call me,email;sms,yes\n"
                "s-two,Two,jewish,Town,,zone-nowhere,,Bo,bo@example.org,,email,yes\n")
GOOD = HEADER + ("s-new,New Centre,muslim,Town,45.4,,c-1,Ana,ana@example.org,+1 613 555 0100,"
                 "email;sms,yes\n"
                 "s-two,Two,jewish,Town,,zone-north,c-2,Bo,bo@example.org,,email,yes\n")
RAW_PATTERN = ("String should match pattern", "[0-9 ()-]")


def expected(name: str) -> list[str]:
    return [f"{name}:2: lat: Input should be less than or equal to 90",
            f"{name}:2: phone: {PHONE_HELP}",
            f"{name}:2: site s-new: unknown community 'muslin' (did you mean 'muslim'?)",
            f"{name}:3: site s-two: unknown patrol zone 'zone-nowhere'",
            f"{name}:3: contact_id: this row has contact_name, email, channels but no contact_id"]


def lines_of(problems: list[str], name: str) -> list[int]:
    return [int(m.group(1)) for p in problems if (m := re.match(rf"{re.escape(name)}:(\d+):", p))]


async def test_defect_4_one_upload_lists_every_problem_under_the_files_own_name(
        console: Console) -> None:
    name = "partners-march.csv"
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        refused = await client.post("/partners/import", data={"csrf_token": token},
                                    files={"file": (name, BAD.encode(), "text/csv")})
        assert refused.status_code == 422
        text = unescape(refused.text)
        listed = [unescape(li) for li in re.findall(r"<li>(.*?)</li>", refused.text, re.S)
                  if li.startswith(name)]
        for problem in expected(name):
            assert any(p.startswith(problem) for p in listed), (problem, listed)
        assert lines_of(listed, name) == sorted(lines_of(listed, name))  # in line order
        assert "upload.csv" not in text
        assert not any(raw in text for raw in RAW_PATTERN)
        assert "New Centre" not in (await client.get("/partners", params={"q": "s-new"})).text
        # One round of fixes is enough.
        ok = await client.post("/partners/import", data={"csrf_token": token},
                               files={"file": (name, GOOD.encode(), "text/csv")})
    assert ok.status_code == 200, ok.text


async def test_defect_4_the_cli_import_lists_every_problem_too(tmp_path: Path,
                                                               settings: Settings) -> None:
    path = tmp_path / "partners.csv"
    path.write_text(BAD, encoding="utf-8")
    with pytest.raises(SourceError) as caught:
        await admin.import_file(settings, path, actor="test")
    problems = caught.value.problems
    for problem in expected(str(path)):
        assert any(p.startswith(problem) for p in problems), (problem, problems)
    assert not any(raw in p for p in problems for raw in RAW_PATTERN)
    async with admin.open_db(settings) as db, db.transaction() as session:
        assert (await session.execute(select(func.count()).select_from(Site))).scalar() == 0


def test_defect_4_an_uploads_name_is_its_own_last_part() -> None:
    assert upload_name("partners-march.csv") == "partners-march.csv"
    assert upload_name("C:\\fakepath\\centres.csv") == "centres.csv"
    assert upload_name("../../etc/x.csv") == "x.csv"
    assert upload_name("a\x1b[31mb.csv") == "a[31mb.csv"
    assert upload_name("") == upload_name(None) == "upload.csv"


async def test_defect_4_the_site_editor_explains_a_bad_phone_in_words(console: Console) -> None:
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        page = await client.post("/partners/sites", data={
            "csrf_token": token, "site_id": "s-phone", "name": "Phone Centre",
            "kind": "community_centre", "communities": "muslim", "municipality": "Town",
            "contact_rows": "1", "c0-contact_id": "c-p", "c0-name": "Pat",
            "c0-phone": "call me", "c0-channels": "sms", "c0-consent": "yes"})
    assert page.status_code == 422
    text = unescape(page.text)
    assert PHONE_HELP in text and not any(raw in text for raw in RAW_PATTERN)
