"""CLI commands: `flask --app api keys create|list|revoke` (the key is shown once, at creation)."""

from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup

from api import keys
from api.resources import cache, db, resources
from sync.readcache import CacheUnavailable
from workers import deadletters

keys_cli = AppGroup("keys", help="Manage server API keys (X-API-Key).")


@keys_cli.command("create")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice(keys.SCOPES))
def create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a key; prints it once. Store it now: only its hash is kept."""
    key, record = keys.create_key(db(), name, list(scopes))
    click.echo(key)
    click.echo(f"id={record['id']} scopes={','.join(record['scopes'])}", err=True)


@keys_cli.command("list")
def list_() -> None:
    """List keys (never their secrets) as JSON lines."""
    for record in keys.list_keys(db()):
        click.echo(json.dumps(record, default=str))


@keys_cli.command("revoke")
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key by its id; it stops working at once."""
    try:
        revoked = keys.revoke_key(db(), key_id, cache())
    except CacheUnavailable as exc:
        raise click.ClickException(f"{exc}; the key was not revoked") from None
    if not revoked:
        raise click.ClickException(f"no active key with id {key_id}")
    click.echo(f"revoked {key_id}")


dead_letters_cli = AppGroup("dead-letters", help="Inspect and replay dead-lettered messages.")


@dead_letters_cli.command("list")
@click.option("--limit", default=100, show_default=True)
def dead_letters_list(limit: int) -> None:
    """Describe dead letters (task, id, where from, why) as JSON lines; removes nothing."""
    broker = resources().settings.broker_url
    for entry in deadletters.list_dead_letters(broker, limit):
        click.echo(json.dumps(entry, default=str))


@dead_letters_cli.command("replay")
@click.option("--task-id", default=None, help="Replay only this task's message.")
@click.option("--limit", default=100, show_default=True)
def dead_letters_replay(task_id: str | None, limit: int) -> None:
    """Publish dead letters back to the queue they came from."""
    broker = resources().settings.broker_url
    count = deadletters.replay_dead_letters(broker, task_id, limit)
    click.echo(f"replayed {count}")


def register_commands(app: Flask) -> None:
    app.cli.add_command(keys_cli)
    app.cli.add_command(dead_letters_cli)
