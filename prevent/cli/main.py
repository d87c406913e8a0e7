"""The `prevent` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from prevent.cli.deadletter_commands import app as deadletters_app
from prevent.cli.diaspora_commands import register as register_diaspora_commands
from prevent.cli.feed_commands import register as register_feed_commands
from prevent.platform import logthrottle
from prevent.platform.config import Settings, get_settings
from prevent.platform.yamlsource import SourceError

app = typer.Typer(help="prevent: global event, local response.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
playbooks_app = typer.Typer(help="Playbooks: check, schema, apply, export.", no_args_is_help=True)
feeds_app = typer.Typer(help="Feeds: the registry, health, and what a feed would emit.",
                        no_args_is_help=True)
partners_app = typer.Typer(help="The partner registry: import and export.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(playbooks_app, name="playbooks")
app.add_typer(feeds_app, name="feeds")
register_feed_commands(feeds_app)  # list, add, remove, enable, disable, status
app.add_typer(partners_app, name="partners")
users_app = typer.Typer(help="Console/API users and their tokens.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alerts: list, raise exercises.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(alerts_app, name="alerts")
app.add_typer(deadletters_app, name="deadletters")


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for noisy in ("aiokafka", "apscheduler", "httpx", "uvicorn.access", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logthrottle.install()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SupervisorNoise) for f in handler.filters):
            handler.addFilter(SupervisorNoise())


class SupervisorNoise(logging.Filter):
    """FastStream logs "callback for Task-77 is being executed..." at INFO whenever a
    subscriber task ends, so every shutdown printed one per subscriber: meaningless to an
    operator. Its real news (a task that raised and is retried) is logged apart, and kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith("callback for ") and text.endswith(" is being executed..."))


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

    from prevent.cli.services import running_system
    from prevent.web.app import ConsoleState, create_app

    settings = get_settings()
    if demo is not None:
        settings = settings.model_copy(update={"demo": demo})
    bind_host, bind_port = host or settings.http_host, port or settings.http_port
    settings = bound_settings(settings, bind_host, bind_port)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def state(_app: object) -> AsyncIterator[ConsoleState]:
        async with running_system(settings) as system:
            yield system.console_state()

    typer.echo(f"prevent console on http://{bind_host}:{bind_port}  (Ctrl-C to stop)")
    uvicorn.run(create_app(state), **_uvicorn_options(bind_host, bind_port))


def bound_settings(settings: Settings, host: str, port: int) -> Settings:
    """``settings`` whose ``public_base_url`` follows the address the console is bound to,
    unless PREVENT_PUBLIC_BASE_URL was set: acknowledgement links, SMS status URLs and the
    sign-in hint must name the port actually served (``--port 8101``), not the default."""
    if "public_base_url" in settings.model_fields_set:
        return settings
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared, not bound
    shown = f"[{shown}]" if ":" in shown else shown
    return settings.model_copy(update={"public_base_url": f"http://{shown}:{port}",
                                       "http_host": host, "http_port": port})


def _uvicorn_options(host: str, port: int) -> dict[str, Any]:
    """uvicorn's own proxy-header handling is off (it believes X-Forwarded-For from any local
    client): the console believes forwarded headers only from PREVENT_TRUSTED_PROXIES."""
    return {"host": host, "port": port, "log_level": "warning", "proxy_headers": False,
            "server_header": False}


NO_BOOTSTRAP = ("{command} needs PREVENT_KAFKA_BOOTSTRAP (the Kafka cluster to use): only "
                "`prevent up` and `prevent broker` start an embedded broker")


def _production_settings(command: str) -> Settings:
    """A production service's settings, or a one-line refusal: never an embedded broker,
    never demo data, users or sinks (they come only with `prevent up` / `--demo`)."""
    settings = get_settings()
    if not settings.kafka_bootstrap:
        raise _fail(NO_BOOTSTRAP.format(command=f"prevent {command}"))
    return settings.model_copy(update={"demo": False})


def _service(names: tuple[str, ...], verbose: bool) -> None:
    settings = _production_settings(names[0])
    _logging(verbose)
    from prevent.cli.services import run_until_stopped

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
    """Run the web console alone (needs PREVENT_KAFKA_BOOTSTRAP, like every production service)."""
    settings = _production_settings("console")
    settings = bound_settings(settings, host or settings.http_host, port or settings.http_port)
    _logging(verbose)
    from contextlib import asynccontextmanager

    import uvicorn

    from prevent.platform.storage.db import Database
    from prevent.web.app import ConsoleState, create_app


    @asynccontextmanager
    async def state(_app: object) -> AsyncIterator[ConsoleState]:
        db = Database(settings.effective_database_url)
        await db.upgrade()
        try:
            yield ConsoleState(db=db, settings=settings)
        finally:
            await db.dispose()

    uvicorn.run(create_app(state), **_uvicorn_options(host or settings.http_host,
                                                      port or settings.http_port))


@app.command()
def broker(port: Annotated[int | None, typer.Option(help="port (default: a free one)")] = None
           ) -> None:
    """Run the embedded Kafka broker (Tansu) in the foreground with the project's topics."""
    from prevent.platform.broker import BrokerError, run_foreground
    from prevent.platform.runtime import topic_partitions

    try:
        run_foreground(topic_partitions(get_settings()), port=port)
    except BrokerError as exc:
        raise _fail(str(exc)) from exc


# ------------------------------------------------------------------ admin


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema."""
    from prevent.platform.storage.db import run_sync_upgrade

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
    from prevent.cli.contract_doc import asyncapi_document

    output.parent.mkdir(parents=True, exist_ok=True)
    # Sorted: FastStream lists channels in set order, which changes from run to run.
    output.write_text(json.dumps(asyncapi_document(get_settings()), indent=2, sort_keys=True) + "\n")
    typer.echo(f"wrote {output}")


@app.command()
def classify(path: Annotated[Path, typer.Argument(help="JSON lines with title, summary, published")],
             group: Annotated[bool, typer.Option(
                 "--group", help="replay the items in time order and print the cluster each joins")] = False,
             from_files: Annotated[bool, typer.Option(
                 "--from-files", help="judge the playbook files, not the versions in the database")
             ] = False,
             semantic: Annotated[bool | None, typer.Option(
                 "--semantic/--no-semantic", help="refine with the semantic layer (needs "
                 "prevent[semantic]); default: PREVENT_SEMANTIC")] = None,
             ) -> None:
    """Classify incidents: one JSON line out per line in (lang, communities, backlash,
    incident_type, severity, country, playbooks that would fire, evidence); the playbooks
    are the versions in force in the database when there is one."""
    from prevent.cli.classify_commands import classify_lines
    from prevent.cli.playbook_commands import playbooks_in_force

    settings = get_settings()
    stored = playbooks_in_force(settings, settings.playbooks_dir, from_files=from_files)
    try:
        for line in classify_lines(path.read_text(encoding="utf-8").splitlines(), settings, group=group,
                                   stored=stored, semantic=semantic):
            sys.stdout.write(line + "\n")
    except ValueError as exc:
        raise _fail(str(exc)) from exc


def _report_check(problems: list[str], valid: str) -> None:
    """A check command's output: each ``file:line`` problem on stderr and exit 1, or ``valid``."""
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(valid)


@playbooks_app.command("check")
def playbooks_check(path: Annotated[Path | None, typer.Argument()] = None) -> None:
    """Validate playbooks, the lexicon and the notice templates; exit 1 with file:line errors."""
    from prevent.rules.playbooks.check import check_directory

    _report_check(check_directory(path or get_settings().playbooks_dir),
                  "playbooks, lexicon, exemplars and templates are valid")


@playbooks_app.command("schema")
def playbooks_schema() -> None:
    """Print the playbook JSON Schema (for editor completion)."""
    from prevent.rules.playbooks.schema import Playbook

    typer.echo(json.dumps(Playbook.model_json_schema(by_alias=True), indent=2))


@playbooks_app.command("apply")
def playbooks_apply(path: Annotated[Path | None, typer.Argument()] = None,
                    author: str = "cli", note: str = "",
                    force: Annotated[bool, typer.Option(
                        help="store the files even over a newer stored version")] = False) -> None:
    """Validate and store a new version of each changed playbook; running consumers swap.
    A file that is an earlier stored version of its playbook while a newer one is in force
    (an edit in the console) is refused, naming both versions, unless --force."""
    from prevent.platform.storage.db import Database
    from prevent.rules.playbooks import store
    from prevent.rules.playbooks.loader import playbook_files

    settings = get_settings()
    directory = path or settings.playbooks_dir

    async def go() -> dict[str, int] | list[str]:
        db = Database(settings.effective_database_url)
        await db.upgrade()
        try:
            async with db.transaction() as session:
                sources = [(str(p), p.read_text(encoding="utf-8")) for p in playbook_files(directory)]
                if not force and (stale := await store.stale_sources(session, sources)):
                    return stale
                return await store.apply_sources(session, sources, author=author, note=note)
        finally:
            await db.dispose()

    try:
        changed = asyncio.run(go())
    except SourceError as exc:
        raise _fail(str(exc)) from exc
    if isinstance(changed, list):
        for line in changed:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(1)
    typer.echo(f"stored {changed}" if changed else "no playbook changed")


@playbooks_app.command("test")
def playbooks_test(
    path: Annotated[Path | None, typer.Argument(help="playbooks directory")] = None,
    since: Annotated[str | None, typer.Option(help="backtest stored incidents, e.g. 30d")] = None,
    input_file: Annotated[Path | None, typer.Option("--input", help="backtest a JSON-lines file")] = None,
    at: Annotated[str | None, typer.Option(help="judge as of this time (ISO 8601)")] = None,
    from_files: Annotated[bool, typer.Option(
        "--from-files", help="judge the playbook files, not the versions in the database")] = False,
) -> None:
    """Backtest playbooks over stored incidents or a file (the versions in force in the
    database when there is one); with neither, run the golden cases in playbooks/tests/ as
    an assertion suite over the files (exit 1 on a failing case)."""
    from prevent.cli import playbook_commands as tools

    directory = path or get_settings().playbooks_dir
    try:
        ok = tools.run_test_command(get_settings(), directory, since=_duration(since) if since else None,
                                    input_file=input_file, at=at,
                                    from_files=from_files or path is not None)
    except SourceError as exc:
        raise _fail(str(exc)) from exc
    if not ok:
        raise typer.Exit(1)


@playbooks_app.command("explain")
def playbooks_explain(
    target: Annotated[str, typer.Argument(help="a stored incident id, or a JSON file with title/summary")],
    playbook: Annotated[str | None, typer.Option(help="only this playbook")] = None,
    at: Annotated[str | None, typer.Option(help="judge as of this time (ISO 8601)")] = None,
    from_files: Annotated[bool, typer.Option(
        "--from-files", help="judge the playbook files, not the versions in the database")] = False,
) -> None:
    """Why an incident matched a playbook or did not, rule by rule (the versions in force
    in the database when there is one)."""
    from prevent.cli import playbook_commands as tools

    try:
        tools.run_explain_command(get_settings(), target, playbook, at, from_files=from_files)
    except (SourceError, LookupError) as exc:
        raise _fail(str(exc)) from exc


@playbooks_app.command("export")
def playbooks_export(output: Annotated[Path, typer.Option(help="directory to write")] = Path("playbooks")
                     ) -> None:
    """Write the stored (newest) version of every playbook as YAML files."""
    from prevent.cli import playbook_commands as tools

    for written in tools.run_export_command(get_settings(), output):
        typer.echo(f"wrote {written}")


diaspora_app = typer.Typer(help="The diaspora map: communities here linked to countries and regions abroad.",
                           no_args_is_help=True)
app.add_typer(diaspora_app, name="diaspora")
register_diaspora_commands(diaspora_app)  # import, edit, history, export, rollback


@diaspora_app.command("check")
def diaspora_check(path: Annotated[Path | None, typer.Argument(help="a diaspora.yaml")] = None) -> None:
    """Validate the diaspora map; exit 1 with file:line errors."""
    from prevent.classification import load_lexicon
    from prevent.classification.diaspora import DIASPORA_FILE, load_diaspora_errors

    directory = get_settings().playbooks_dir
    known = {c.id for c in load_lexicon(directory).communities.communities}
    _report_check(load_diaspora_errors(path or directory / DIASPORA_FILE, known)[1],
                  "the diaspora map is valid")


@diaspora_app.command("show")
def diaspora_show(country: Annotated[str | None, typer.Argument(help="an ISO country code")] = None,
                  from_files: Annotated[bool, typer.Option(
                      "--from-files", help="the file's map, not the version in force in the database")
                  ] = False) -> None:
    """Print the map's links (all, or one country's), with the communities.yaml home countries
    (the version in force in the database when there is one)."""
    from prevent.cli.diaspora_commands import classifier_in_force

    clf = classifier_in_force(from_files=from_files)
    for code, ids in sorted(clf.diaspora_links().items()):
        if country is None or code == country.upper():
            typer.echo(f"{code}: {', '.join(ids)}")
    for region, names in clf.diaspora_regions():
        if country is None or region.country == country.upper():
            faith = f"; majority {region.majority_faith}" if region.majority_faith else ""
            typer.echo(f"{region.id} ({', '.join(names[:3])}): {', '.join(region.communities) or '-'}{faith}")


@feeds_app.command("check")
def feeds_check(target: Annotated[str, typer.Argument(help="a URL or a file")],
                kind: str | None = None, as_json: Annotated[bool, typer.Option("--json")] = False,
                level_pattern: Annotated[str | None, typer.Option(help="threat_level only")] = None,
                classify: Annotated[bool, typer.Option(
                    "--classify", help="also classify each incident and name the playbooks that "
                    "would fire as of its publication time")] = False,
                ) -> None:
    """Fetch or read one feed and print the incidents it would emit, without publishing."""
    from prevent.feeds.dryrun import check_feed

    try:
        incidents, problems = asyncio.run(check_feed(target, kind, settings=get_settings(),
                                                     level_pattern=level_pattern))
    except Exception as exc:  # one clear line for the person at the terminal
        raise _fail(str(exc)) from exc
    verdicts: list[dict[str, Any]] = [{} for _ in incidents]
    if classify:
        from prevent.cli.classify_commands import classify_incidents

        verdicts = list(classify_incidents(incidents, get_settings()))
    for incident, verdict in zip(incidents, verdicts, strict=True):
        if as_json:
            typer.echo(json.dumps(incident.model_dump(mode="json") | verdict, ensure_ascii=False))
        elif verdict:
            c = verdict["classification"]
            typer.echo(f"{incident.published:%Y-%m-%d %H:%M} {incident.incident_id} {incident.title}\n"
                       f"    {c['incident_type']} severity {c['severity']} {c['country'] or '-'} "
                       f"[{c['lang']}] {','.join(c['communities']) or '-'} "
                       f"playbooks: {','.join(verdict['playbooks']) or '-'}")
        else:
            typer.echo(f"{incident.published:%Y-%m-%d %H:%M} {incident.incident_id} {incident.title}")
    for problem in problems:
        typer.echo(f"warning: {problem}", err=True)


@partners_app.command("import")
def partners_import(path: Path, actor: str = "cli") -> None:
    """Validate a CSV or YAML registry file, then apply it all or nothing."""
    from prevent.cli.admin import import_file

    try:
        counts = asyncio.run(import_file(get_settings(), path, actor))
    except SourceError as exc:
        raise _fail(f"nothing imported; fix these rows:\n{exc}") from exc
    from prevent.partners.checks import counts_text

    typer.echo(f"imported: {counts_text(counts)}")


@partners_app.command("renew-consent")
def partners_renew_consent(contact_id: str, note: Annotated[str, typer.Option(
        help="where the new consent is recorded, e.g. 'signed form, 2026-11-25'")],
                           actor: str = "cli") -> None:
    """Record a contact's new consent: the registry's values govern them again."""
    from prevent.cli.admin import renew_consent

    try:
        asyncio.run(renew_consent(get_settings(), contact_id, note=note, actor=actor))
    except LookupError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"consent renewed for contact {contact_id}")


@partners_app.command("export")
def partners_export() -> None:
    """Print the registry as YAML (the import format)."""
    from prevent.cli.admin import export_yaml

    typer.echo(asyncio.run(export_yaml(get_settings())), nl=False)


@app.command()
def audit(alert: str | None = None, since: Annotated[str | None, typer.Option(
        help="e.g. 24h, 7d")] = None) -> None:
    """Print the audit trail."""
    from prevent.cli.admin import print_audit

    delta = _duration(since) if since else None
    asyncio.run(print_audit(get_settings(), alert, delta))


@users_app.command("add")
def users_add(name: str, role: Annotated[str, typer.Option(
        help="viewer, duty_inspector, engagement_officer or admin")],
              actor: str = "cli") -> None:
    """Add a user; the password is prompted for, or read from stdin when piped."""
    from prevent import users
    from prevent.cli.alert_commands import add_user

    password = (sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty()
                else typer.prompt("password", hide_input=True, confirmation_prompt=True))
    try:
        asyncio.run(add_user(get_settings(), name, users.parse_role(role), password, actor))
    except users.UserError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"user {name} added as {role}")


@users_app.command("list")
def users_list(actor: str = "cli") -> None:
    """List users: name, role, whether they have a second factor, whether disabled."""
    from prevent.cli.alert_commands import list_users

    for u in asyncio.run(list_users(get_settings(), actor)):
        state = "disabled" if u["disabled"] else "active"
        factor = "totp" if u["second_factor"] else "no-totp"
        typer.echo(f"{u['name']}\t{u['role']}\t{factor}\t{state}")


@users_app.command("role")
def users_role(name: str, role: str, actor: str = "cli") -> None:
    """Give NAME another role (from their next request on)."""
    from prevent import users
    from prevent.cli.alert_commands import change_user

    try:
        changed = asyncio.run(change_user(get_settings(), name, actor, role=users.parse_role(role)))
    except users.UserError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"user {name} is now {role}" if changed else f"user {name} was already {role}")


@users_app.command("disable")
def users_disable(name: str, actor: str = "cli") -> None:
    """Disable NAME: their sessions end and their API tokens are revoked at once."""
    _set_active(name, actor, active=False)


@users_app.command("enable")
def users_enable(name: str, actor: str = "cli") -> None:
    """Enable NAME again (they sign in anew; revoked tokens stay revoked)."""
    _set_active(name, actor, active=True)


def _set_active(name: str, actor: str, *, active: bool) -> None:
    from prevent import users
    from prevent.cli.alert_commands import change_user

    try:
        changed = asyncio.run(change_user(get_settings(), name, actor, active=active))
    except users.UserError as exc:
        raise _fail(str(exc)) from exc
    state = "enabled" if active else "disabled"
    typer.echo(f"user {name} {state}" if changed else f"user {name} was already {state}")


@users_app.command("token")
def users_token(name: str, actor: str = "cli") -> None:
    """Print a new API bearer token for NAME (shown once; only its SHA-256 is stored)."""
    from prevent import users
    from prevent.cli.alert_commands import new_token

    try:
        typer.echo(asyncio.run(new_token(get_settings(), name, actor)))
    except users.UserError as exc:
        raise _fail(str(exc)) from exc


@users_app.command("totp")
def users_totp(name: str, actor: str = "cli") -> None:
    """Enrol (or replace) NAME's TOTP second factor; prints the otpauth:// URI once."""
    from prevent import users
    from prevent.cli.admin import open_db
    from prevent.partners.acklinks import secret_key
    from prevent.web.sessions import enroll_totp

    async def enroll() -> str:
        settings = get_settings()
        async with open_db(settings) as db, db.transaction() as session:
            return await enroll_totp(session, name, actor=actor, key=secret_key(settings))

    try:
        typer.echo(asyncio.run(enroll()))
    except users.UserError as exc:
        raise _fail(str(exc)) from exc


@alerts_app.command("exercise")
def alerts_exercise(
    title: str,
    playbook: Annotated[str, typer.Option(help="playbook id")] = "place-of-worship-attack",
    community: Annotated[list[str], typer.Option(help="repeatable, e.g. --community muslim")] = [],  # noqa: B006
    severity: Annotated[int, typer.Option(min=0, max=4)] = 3,
    summary: str = "",
    actor: str = "cli",
) -> None:
    """Raise a proposed EXERCISE alert; it flows end to end marked as an exercise."""
    from prevent.alerts.states import AlertError
    from prevent.cli.alert_commands import raise_exercise

    try:
        alert = asyncio.run(raise_exercise(get_settings(), actor, playbook, community or ["muslim"],
                                           severity, title, summary))
    except AlertError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"exercise alert {alert.alert_id} proposed (revision {alert.revision})")


@alerts_app.command("list")
def alerts_list(status: Annotated[list[str], typer.Option(help="repeatable filter")] = [],  # noqa: B006
                ) -> None:
    """List alerts (newest first), exercises marked."""
    from prevent.cli.alert_commands import list_alerts

    for a in asyncio.run(list_alerts(get_settings(), status)):
        mark = " [EXERCISE]" if a.exercise else ""
        typer.echo(f"{a.updated_at:%Y-%m-%d %H:%M} {a.alert_id} {a.status.value:<9} r{a.revision} "
                   f"sev{a.severity} {a.playbook_id}{mark} {a.title}")


def _duration(text: str) -> timedelta:
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if not text[:-1].isdigit() or text[-1] not in units:
        raise _fail(f"cannot read duration '{text}': use e.g. 30m, 24h, 7d")
    return timedelta(**{units[text[-1]]: int(text[:-1])})


def main() -> None:  # pragma: no cover
    app()


__all__ = ["Settings", "app"]
