"""The `prevent` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from prevent.config import Settings, get_settings

app = typer.Typer(help="prevent: global event, local response.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
playbooks_app = typer.Typer(help="Playbooks: check, schema, apply, export.", no_args_is_help=True)
feeds_app = typer.Typer(help="Feeds: check what a feed would emit.", no_args_is_help=True)
partners_app = typer.Typer(help="The partner registry: import and export.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(playbooks_app, name="playbooks")
app.add_typer(feeds_app, name="feeds")
app.add_typer(partners_app, name="partners")


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for noisy in ("aiokafka", "apscheduler", "httpx", "uvicorn.access", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


# ------------------------------------------------------------------ running


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="console address [PREVENT_HTTP_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="console port [PREVENT_HTTP_PORT]")] = None,
    demo: Annotated[bool | None, typer.Option(
        "--demo/--no-demo", help="serve the demo feed, SMTP sink and sample registry")] = None,
    verbose: bool = False,
) -> None:
    """Run everything in one process: broker, watcher, rules, notifiers and the console.

    With no configuration it starts the embedded Kafka broker (Tansu), a SQLite
    database under var/, a locally served demo feed and an SMTP sink whose mail
    appears on the console. Point it at real infrastructure with environment variables:

    \b
      PREVENT_KAFKA_BOOTSTRAP=host:9092           an Apache Kafka cluster (no embedded broker)
      PREVENT_DATABASE_URL=postgresql+asyncpg://user@host/db
      PREVENT_FEEDS_FILE=feeds.yaml               real feeds instead of the demo feed
      PREVENT_SMTP_HOST / _PORT / _USERNAME / _PASSWORD / _STARTTLS, PREVENT_MAIL_FROM
      PREVENT_DEMO=false                          no demo feed, sink or sample registry
      PREVENT_ALLOW_PRIVATE_ADDRESSES=true        let feeds reach private networks

    Settings may also live in prevent.toml (git-ignored); see `prevent config show`.
    """
    _logging(verbose)
    import uvicorn

    from prevent.console.app import create_app
    from prevent.services import running_system

    settings = get_settings()
    if demo is not None:
        settings = settings.model_copy(update={"demo": demo})

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def state(_app: object):  # noqa: ANN202
        async with running_system(settings) as system:
            yield system.console_state()

    bind_host, bind_port = host or settings.http_host, port or settings.http_port
    typer.echo(f"prevent console on http://{bind_host}:{bind_port}  (Ctrl-C to stop)")
    uvicorn.run(create_app(state), host=bind_host, port=bind_port, log_level="warning")


def _service(names: tuple[str, ...], verbose: bool) -> None:
    _logging(verbose)
    from prevent.services import run_until_stopped

    settings = get_settings().model_copy(update={"demo": False})
    asyncio.run(run_until_stopped(settings, names))


@app.command()
def watcher(verbose: bool = False) -> None:
    """Run the feed watcher service (feeds from PREVENT_FEEDS_FILE)."""
    _service(("watcher",), verbose)


@app.command()
def rules(verbose: bool = False) -> None:
    """Run the rules consumer service."""
    _service(("rules",), verbose)


@app.command("centre-notifier")
def centre_notifier(verbose: bool = False) -> None:
    """Run the centre notifier service (notices to partner centres)."""
    _service(("centre-notifier",), verbose)


@app.command("patrol-notifier")
def patrol_notifier(verbose: bool = False) -> None:
    """Run the patrol notifier service (patrol assignments)."""
    _service(("patrol-notifier",), verbose)


@app.command()
def console(host: str | None = None, port: int | None = None, verbose: bool = False) -> None:
    """Run the web console alone."""
    _logging(verbose)
    from contextlib import asynccontextmanager

    import uvicorn

    from prevent.console.app import ConsoleState, create_app
    from prevent.storage.db import Database

    settings = get_settings()

    @asynccontextmanager
    async def state(_app: object):  # noqa: ANN202
        db = Database(settings.effective_database_url)
        await db.upgrade()
        try:
            yield ConsoleState(db=db)
        finally:
            await db.dispose()

    uvicorn.run(create_app(state), host=host or settings.http_host,
                port=port or settings.http_port, log_level="warning")


@app.command()
def broker(port: Annotated[int | None, typer.Option(help="port (default: a free one)")] = None
           ) -> None:
    """Run the embedded Kafka broker (Tansu) in the foreground with the project's topics."""
    from prevent.broker import BrokerError, run_foreground
    from prevent.runtime import topic_partitions

    try:
        run_foreground(topic_partitions(get_settings()), port=port)
    except BrokerError as exc:
        raise _fail(str(exc)) from exc


# ------------------------------------------------------------------ admin


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema."""
    from prevent.storage.db import run_sync_upgrade

    settings = get_settings()
    run_sync_upgrade(settings.effective_database_url)
    typer.echo("database schema is up to date")


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration, secrets masked."""
    typer.echo(json.dumps(get_settings().masked(), indent=2, default=str))


@app.command()
def asyncapi(output: Path = Path("docs/asyncapi.json")) -> None:
    """Write the AsyncAPI document of every service's topics to docs/asyncapi.json."""
    from prevent.asyncapi import asyncapi_document

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(asyncapi_document(get_settings()), indent=2) + "\n")
    typer.echo(f"wrote {output}")


@app.command()
def classify(path: Annotated[Path, typer.Argument(help="JSON lines with title, summary, published")],
             ) -> None:
    """Classify incidents: one JSON line out per line in (communities, incident_type,
    severity, playbooks that would fire, evidence)."""
    from prevent.classify_cli import classify_lines

    settings = get_settings()
    try:
        for line in classify_lines(path.read_text(encoding="utf-8").splitlines(), settings):
            sys.stdout.write(line + "\n")
    except ValueError as exc:
        raise _fail(str(exc)) from exc


@playbooks_app.command("check")
def playbooks_check(path: Annotated[Path | None, typer.Argument()] = None) -> None:
    """Validate playbooks, the lexicon and the notice templates; exit 1 with file:line errors."""
    from prevent.playbooks.check import check_directory

    problems = check_directory(path or get_settings().playbooks_dir)
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("playbooks, lexicon and templates are valid")


@playbooks_app.command("schema")
def playbooks_schema() -> None:
    """Print the playbook JSON Schema (for editor completion)."""
    from prevent.playbooks.schema import Playbook

    typer.echo(json.dumps(Playbook.model_json_schema(by_alias=True), indent=2))


@playbooks_app.command("apply")
def playbooks_apply(path: Annotated[Path | None, typer.Argument()] = None,
                    author: str = "cli", note: str = "") -> None:
    """Validate and store a new version of each changed playbook; running consumers swap."""
    from prevent.playbooks import store
    from prevent.storage.db import Database
    from prevent.yamlsource import SourceError

    settings = get_settings()

    async def go() -> dict[str, int]:
        db = Database(settings.effective_database_url)
        await db.upgrade()
        try:
            async with db.transaction() as session:
                return await store.apply_directory(session, path or settings.playbooks_dir,
                                                   author=author, note=note)
        finally:
            await db.dispose()

    try:
        changed = asyncio.run(go())
    except SourceError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"stored {changed}" if changed else "no playbook changed")


@feeds_app.command("check")
def feeds_check(target: Annotated[str, typer.Argument(help="a URL or a file")],
                kind: str | None = None, as_json: Annotated[bool, typer.Option("--json")] = False,
                ) -> None:
    """Fetch or read one feed and print the incidents it would emit, without publishing."""
    from prevent.feeds.check import check_feed

    try:
        incidents, problems = asyncio.run(check_feed(target, kind))
    except Exception as exc:  # noqa: BLE001 - one clear line for the person at the terminal
        raise _fail(str(exc)) from exc
    for incident in incidents:
        if as_json:
            typer.echo(incident.model_dump_json())
        else:
            typer.echo(f"{incident.published:%Y-%m-%d %H:%M} {incident.incident_id} {incident.title}")
    for problem in problems:
        typer.echo(f"warning: {problem}", err=True)


@partners_app.command("import")
def partners_import(path: Path, actor: str = "cli") -> None:
    """Validate a CSV or YAML registry file, then apply it all or nothing."""
    from prevent.admin import import_file
    from prevent.yamlsource import SourceError

    try:
        counts = asyncio.run(import_file(get_settings(), path, actor))
    except SourceError as exc:
        raise _fail(f"nothing imported; fix these rows:\n{exc}") from exc
    typer.echo(f"imported {counts}")


@partners_app.command("export")
def partners_export() -> None:
    """Print the registry as YAML (the import format)."""
    from prevent.admin import export_yaml

    typer.echo(asyncio.run(export_yaml(get_settings())), nl=False)


@app.command()
def audit(alert: str | None = None, since: Annotated[str | None, typer.Option(
        help="e.g. 24h, 7d")] = None) -> None:
    """Print the audit trail."""
    from prevent.admin import print_audit

    delta = _duration(since) if since else None
    asyncio.run(print_audit(get_settings(), alert, delta))


def _duration(text: str) -> timedelta:
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if not text[:-1].isdigit() or text[-1] not in units:
        raise _fail(f"cannot read duration '{text}': use e.g. 30m, 24h, 7d")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


def main() -> None:  # pragma: no cover
    app()


__all__ = ["Settings", "app"]
