"""Issue 22: defect 3 (the browser editor judges templates as `prevent playbooks check`) and
defect 13 (community filter case, a nonsense alert id on /notices)."""

from __future__ import annotations

from contextlib import aclosing

from sqlalchemy import func, select

from prevent.alerts import lifecycle
from prevent.platform.storage.tables import PlaybookVersion
from prevent.rules.playbooks import store
from prevent.users import Principal, Role

from .conftest import Console

INSPECTOR = Principal("duty-inspector", Role.DUTY_INSPECTOR)
THREAT = "threat-level-raised"


async def _stored(console: Console, playbook_id: str) -> tuple[str, int]:
    async with console.db.transaction() as session:
        row = {r.playbook_id: r for r in await store.latest_versions(session)}[playbook_id]
        return row.source, row.version


async def _count(console: Console) -> int:
    async with console.db.transaction() as session:
        return (await session.execute(select(func.count()).select_from(PlaybookVersion))).scalar_one()


async def test_defect_3_a_misspelt_template_is_refused_with_its_line(console: Console) -> None:
    async with console.db.transaction() as session:
        ids = {r.playbook_id for r in await store.latest_versions(session)}
    pid = next(i for i in ids if "threat" in i)
    source, version = await _stored(console, pid)
    assert "template: threat_level\n" in source
    draft = source.replace("template: threat_level\n", "template: threat_levle\n")
    line = draft[:draft.index("threat_levle")].count("\n") + 1
    before = await _count(console)
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        for action in ("check", "save"):
            page = await client.post(f"/playbooks/{pid}/edit", data={
                "csrf_token": token, "source": draft, "action": action, "note": "typo",
                "base_version": str(version)})
            assert page.status_code == 422, (action, page.text[-2000:])
            assert "The draft is valid" not in page.text
            assert "template threat_levle.en.j2 is missing" in page.text
            assert f"line {line}" in page.text
    assert await _count(console) == before


async def test_defect_13_the_community_filter_ignores_case(console: Console) -> None:
    async with console.db.transaction() as session:
        raised = await lifecycle.raise_exercise(
            session, INSPECTOR, playbook_id="place-of-worship-attack", communities=["muslim"],
            severity=3, title="Exercise: arson at a mosque")
    client, _token = await console.signed_in(Role.VIEWER)
    async with aclosing(client):
        for typed in ("muslim", "Muslim", " MUSLIM "):
            page = await client.get("/", params={"community": typed, "exercises": "1"})
            assert f'data-alert-id="{raised.alert_id}"' in page.text, typed


async def test_defect_13_a_nonsense_alert_id_on_notices_says_so(console: Console) -> None:
    client, _token = await console.signed_in(Role.VIEWER)
    async with aclosing(client):
        page = await client.get("/notices", params={"alert": "no-such-alert"})
        everything = await client.get("/notices")
    assert page.status_code == 404 and "There is no alert" in page.text
    assert "No notices yet" not in page.text
    assert everything.status_code == 200 and "There is no alert" not in everything.text


async def test_defects_8_and_11_the_ack_page_wraps_omits_its_own_link_and_shows_local_time(
        console: Console, settings) -> None:
    from datetime import UTC, datetime, timedelta

    from prevent.contracts import utcnow
    from prevent.partners.acklinks import AckLinks
    from prevent.platform.storage.tables import NoticeRow

    created = utcnow() - timedelta(days=2)
    acked = datetime(2026, 7, 1, 16, 30, tzinfo=UTC)  # summer: EDT, four hours behind
    token = AckLinks.from_settings(settings).token("n-ack-page", created)
    body = ("A long line " + "x" * 400 + "\nPlease confirm you received this notice: "
            f"http://127.0.0.1:8000/ack/{token}\nStay safe.")
    async with console.db.transaction() as session:
        session.add(NoticeRow(notice_id="n-ack-page", alert_id="alr-x", alert_revision=1,
                              kind="initial", site_id="site-masjid-riverside",
                              contact_id="contact-riverside-1", channel="email", language="en",
                              state="acknowledged", attempts=1, subject="Notice", body=body,
                              created_at=created, updated_at=created, sent_at=created,
                              acknowledged_at=acked,
                              acknowledged_via="link"))
    async with aclosing(console.client()) as client:
        page = await client.get(f"/ack/{token}")
    assert page.status_code == 200, page.text
    assert "Please confirm you received" not in page.text and "Stay safe." in page.text
    assert "2026-07-01 12:30 EDT" in page.text and "16:30" not in page.text


HEADER = "site_id,site_name,communities,municipality,contact_id,contact_name,email,channels,consent\n"


async def test_defect_5_import_refuses_unknown_communities_and_contactless_rows(
        console: Console) -> None:
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        bad = HEADER + ("s-new,New Centre,muslin,Town,c-1,Ana,ana@example.org,email,yes\n"
                        "s-two,Two,jewish,Town,,Bo,bo@example.org,email,yes\n")
        refused = await client.post("/partners/import", data={"csrf_token": token},
                                    files={"file": ("r.csv", bad.encode(), "text/csv")})
        assert refused.status_code == 422
        text = refused.text.replace("&#39;", "'")
        assert "r.csv:2: site s-new: unknown community 'muslin' (did you mean 'muslim'?)" in text
        assert ("r.csv:3: contact_id: this row has contact_name, email, channels but no "
                "contact_id") in text
        listed = (await client.get("/partners", params={"q": "s-new"})).text
        assert "New Centre" not in listed  # all or nothing
        good = HEADER + "s-new,New Centre,muslim,Town,c-1,Ana,ana@example.org,email,yes\n"
        ok = await client.post("/partners/import", data={"csrf_token": token},
                               files={"file": ("r.csv", good.encode(), "text/csv")})
        assert ok.status_code == 200, ok.text


async def test_defect_5_the_site_editor_refuses_an_unknown_community(console: Console) -> None:
    client, token = await console.signed_in(Role.ENGAGEMENT_OFFICER)
    async with aclosing(client):
        base = {"csrf_token": token, "name": "A new centre", "kind": "community_centre",
                "municipality": "Town", "contact_count": "0", "site_id": "site-new"}
        refused = await client.post("/partners/sites", data=base | {"communities": "muslin"})
        assert refused.status_code == 422
        assert "unknown community" in refused.text and "muslim" in refused.text
        ok = await client.post("/partners/sites", data=base | {"communities": "muslim"})
        assert ok.status_code == 303, ok.text


def test_defect_5_the_cli_prints_counts_for_people(monkeypatch, tmp_path) -> None:
    from typer.testing import CliRunner

    from prevent.cli.main import app
    from prevent.platform.config import get_settings

    monkeypatch.setenv("PREVENT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("PREVENT_DATABASE_URL", raising=False)
    good = tmp_path / "r.csv"
    good.write_text(HEADER + "s-new,New Centre,muslim,Town,c-1,Ana,ana@example.org,email,yes\n")
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "s-x,X,muslin,Town,c-2,Bo,bo@example.org,email,yes\n")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["partners", "import", str(good)])
        refused = CliRunner().invoke(app, ["partners", "import", str(bad)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0 and "{" not in result.output, result.output
    assert "1 sites" in result.output and "1 contacts" in result.output
    assert refused.exit_code == 1 and "unknown community 'muslin'" in refused.output


def test_defect_2_backtest_and_explain_count_a_stored_partner_report(settings) -> None:
    from prevent.classification import Classifier
    from prevent.contracts import FeedKind, GlobalIncident, Location, utcnow
    from prevent.rules.playbooks.backtest import evaluate, explain, incident_from_payload
    from prevent.rules.playbooks.evaluate import CompiledSet
    from prevent.rules.playbooks.loader import load_directory

    now = utcnow()
    report = GlobalIncident(
        incident_id="inc-partner", feed_id="partner:site-masjid-riverside",
        kind=FeedKind.PARTNER_REPORT, title="URGENT: Partner report from Riverside Islamic Centre",
        summary="A man is filming the door", published=now, first_seen=now,
        location=Location(place="Riverside", lat=45.42, lon=-75.7),
        categories=("partner_report", "urgent", "muslim"), content_hash="h1")
    item = incident_from_payload(report.model_dump(mode="json"))
    classifier = Classifier.from_dir(settings.playbooks_dir)
    playbooks = CompiledSet(load_directory(settings.playbooks_dir))
    (verdict,) = list(evaluate([item], classifier, playbooks))
    assert "partner-report" in verdict.fired
    _c, rows = explain(item, classifier, playbooks, only="partner-report")
    assert rows and all(r.passed for r in rows[0][2]), rows


def test_defect_13_shutdown_does_not_log_faststream_task_callbacks() -> None:
    import io
    import logging

    from prevent.cli import main as cli

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        cli._logging()
        log = logging.getLogger("prevent.up")
        log.setLevel(logging.INFO)
        log.info("callback for %s is being executed...", "Task-77")
        log.info("Task-78 raised an exception, retrying...")
    finally:
        root.removeHandler(handler)
    assert "is being executed" not in stream.getvalue()
    assert "Task-78 raised an exception" in stream.getvalue()
