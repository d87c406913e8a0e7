"""The CLI surface: every subcommand exists, is documented, and compose uses only real ones."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main
import yaml
from typer.testing import CliRunner

from prevent.cli.main import app

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def command_paths() -> set[str]:
    root = typer.main.get_command(app)
    paths: set[str] = set()

    def walk(cmd: object, prefix: str) -> None:
        if hasattr(cmd, "commands"):  # a group (typer may vendor its own click)
            for name, sub in cmd.commands.items():
                walk(sub, f"{prefix} {name}".strip())
        else:
            paths.add(prefix)

    walk(root, "")
    assert len(paths) > 10, paths  # the walk really found the commands
    return paths


def test_help_lists_subcommands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("up", "broker", "rules", "watcher", "classify", "playbooks", "feeds", "partners"):
        assert re.search(rf"\b{name}\b", result.output), name


def test_every_command_is_documented_in_readme() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [p for p in command_paths() if f"prevent {p}" not in readme]
    assert not missing, f"README.md does not document: {missing}"


def test_compose_services_run_existing_subcommands() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    paths = command_paths()
    services = compose["services"]
    for name in ("watcher", "rules", "centre-notifier", "patrol-notifier", "console"):
        assert name in services, name
    for name, service in services.items():
        third_party = service.get("image", "").startswith(("apache/", "postgres", "axllent"))
        if "command" not in service or third_party:
            continue
        words = [w for w in service["command"] if not w.startswith("-")]
        candidates = {" ".join(words[:n]) for n in (1, 2)}
        assert candidates & paths, f"service {name} runs unknown command {service['command']}"


def test_config_show_masks_secrets(monkeypatch) -> None:
    monkeypatch.setenv("PREVENT_SMTP_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("PREVENT_DATABASE_URL", "postgresql+asyncpg://app:pgpass123@db/prevent")
    from prevent.platform.config import get_settings

    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["config", "show"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0
    assert "hunter2-secret" not in result.output and "pgpass123" not in result.output
    assert "********" in result.output


def test_the_committed_asyncapi_document_is_what_the_services_declare(tmp_path: Path) -> None:
    """docs/asyncapi.json stays true: regenerated, it is byte for byte the committed file
    (run `make asyncapi` after changing a contract or a subscriber)."""
    out = tmp_path / "asyncapi.json"
    result = runner.invoke(app, ["asyncapi", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == (REPO / "docs" / "asyncapi.json").read_text()


def test_users_are_listed_changed_disabled_and_enabled_from_the_cli(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PREVENT_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("PREVENT_DATABASE_URL", raising=False)
    from prevent.platform.config import get_settings

    def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
        result = runner.invoke(app, ["users", *args], input=stdin)
        return result.exit_code, result.output

    get_settings.cache_clear()
    try:
        assert run("add", "ana", "--role", "viewer", stdin="a long enough password\n")[0] == 0
        assert run("role", "ana", "duty_inspector") == (0, "user ana is now duty_inspector\n")
        assert run("role", "ana", "duty_inspector") == (0, "user ana was already duty_inspector\n")
        assert run("disable", "ana") == (0, "user ana disabled\n")
        assert run("list") == (0, "ana\tduty_inspector\tno-totp\tdisabled\n")
        assert run("enable", "ana") == (0, "user ana enabled\n")
        assert run("list")[1] == "ana\tduty_inspector\tno-totp\tactive\n"
        code, output = run("disable", "ghost")
        assert code == 1 and "no user ghost" in output
        code, output = run("role", "ana", "superuser")
        assert code == 1 and "is not one of" in output
    finally:
        get_settings.cache_clear()
