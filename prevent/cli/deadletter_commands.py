"""`prevent deadletters list | replay`: the dead letters of ``prevent.deadletter.v1`` from the
command line (what they are and how replay works: :mod:`prevent.platform.deadletters`)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from prevent.platform.deadletters import read_all, replay, select

app = typer.Typer(help="Dead letters: list them, replay them to their origin topic.",
                  no_args_is_help=True)


def _bootstrap() -> str:
    from prevent.platform.config import get_settings

    bootstrap = get_settings().kafka_bootstrap
    if not bootstrap:
        typer.echo("error: set PREVENT_KAFKA_BOOTSTRAP (the embedded broker of `prevent up` keeps "
                   "its dead letters in memory; see its console)", err=True)
        raise typer.Exit(1)
    return bootstrap


@app.command("list")
def list_command(
    topic: Annotated[str | None, typer.Option(help="only dead letters from this origin topic")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Every dead letter: origin topic[partition]@offset, error kind and error."""
    letters = select(asyncio.run(read_all(_bootstrap())), origin_topic=topic)
    for d in letters:
        s = d.summary()
        if as_json:
            typer.echo(json.dumps(s))
        else:
            typer.echo(f"{d.offset}\t{s['origin_topic']}[{s['origin_partition']}]@{s['origin_offset']}"
                       f"\tkey={s['key']}\t{s['error']}")
    if not as_json:
        typer.echo(f"{len(letters)} dead letter(s)", err=True)


@app.command("replay")
def replay_command(
    topic: Annotated[str, typer.Option(help="origin topic of the records to replay")],
    offset: Annotated[list[int], typer.Option(help="origin offset (repeatable); none = every "
                                                   "dead letter from the topic")] = [],  # noqa: B006
    partition: Annotated[int | None, typer.Option(help="origin partition (offsets repeat "
                                                       "across partitions)")] = None,
    dry_run: Annotated[bool, typer.Option(help="show what would be replayed")] = False,
) -> None:
    """Re-publish chosen dead letters to their origin topic with the original key and value."""
    bootstrap = _bootstrap()
    chosen = select(asyncio.run(read_all(bootstrap)), origin_topic=topic, offsets=offset,
                    partition=partition)
    if not chosen:
        typer.echo("error: no dead letter matches", err=True)
        raise typer.Exit(1)
    for d in chosen:
        typer.echo(f"{'would replay' if dry_run else 'replaying'} {d.origin_topic}"
                   f"[{d.origin_partition}]@{d.origin_offset} key={d.summary()['key']}")
    if not dry_run:
        try:
            count = asyncio.run(replay(bootstrap, chosen))
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"replayed {count} record(s)", err=True)
