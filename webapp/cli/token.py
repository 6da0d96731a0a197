"""`sslmanager token ...`: API tokens from the command line (an admin's shell)."""
from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from ..errors import SSLManagerError
from ..services import tokens as service
from .base import commands, fail


@click.group("token", help="API tokens: create (shown once), list, revoke.")
def token() -> None:
    pass


commands.append(token)


@token.command("create", help="Create an API token and print it once (it is stored hashed).")
@click.option("--name", required=True, help="What uses it (a panel, a server).")
@click.option("--scope", "scopes", multiple=True, required=True,
              help="read, write, issue or keys:read; repeat for several.")
@click.option("--cert", "cert_ids", multiple=True, help="Restrict to this certificate ID (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Restrict to certificates with this tag (repeatable).")
@click.option("--expires", default="", help="e.g. 90d, 12h, 30m; default: never.")
@with_appcontext
def create(name, scopes, cert_ids, tags, expires) -> None:
    try:
        made = service.create(name, scopes, cert_ids=cert_ids, tags=tags, expires=expires)
    except SSLManagerError as exc:
        fail(exc)
    t = made.token
    click.echo(f"Token {t.id} {t.name!r}: {', '.join(t.scopes)}"
               f"{'; ' + service.describe_restriction(t) if service.describe_restriction(t) else ''}"
               f"{'; expires ' + t.expires_at.strftime('%Y-%m-%d %H:%M UTC') if t.expires_at else ''}.",
               err=True)
    click.echo("Shown once, keep it now:", err=True)
    click.echo(made.secret)


@token.command("list", help="List API tokens (never their secrets).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def list_tokens(as_json) -> None:
    rows = [{"id": t.id, "name": t.name, "scopes": t.scopes, "cert_ids": t.cert_ids, "tags": t.tags,
             "state": service.state(t), "created_by": t.created_by,
             "expires_at": t.expires_at.isoformat() if t.expires_at else None,
             "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
             "last_used_address": t.last_used_address} for t in service.all_tokens()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        used = f"used {r['last_used_at'][:16]} from {r['last_used_address']}" if r["last_used_at"] else "never used"
        click.echo(f"{r['id']}\t{r['name']}\t{r['state']}\t{','.join(r['scopes'])}\t{used}")


@token.command("revoke", help="Revoke a token (by id or name): its next call gets 401.")
@click.argument("ref")
@with_appcontext
def revoke(ref) -> None:
    try:
        t = service.get(ref)
        service.revoke(t)
    except SSLManagerError as exc:
        fail(exc)
    click.echo(f"Token {t.id} {t.name!r} revoked.")


