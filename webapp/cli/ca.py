"""`sslmanager ca ...`: CA profiles from the command line, with the UI's validation."""
from __future__ import annotations

import json
import sys

import click
from flask.cli import with_appcontext

from ..errors import SSLManagerError
from ..services import ca_profiles as service
from ..services import failover
from .base import commands, fail


@click.group("ca", help="CA profiles: list, add, edit, test, delete.")
def ca() -> None:
    pass


commands.append(ca)


def _row(profile, counts) -> dict:
    return {"id": profile.id, "name": profile.name, "module": profile.module,
            "ca": profile.ca_key, "directory_url": service.directory_url(profile)
            if profile.module in service.registry().plugins else "",
            "email": profile.email, "dns_zone": profile.dns_zone,
            "allow_wildcard": profile.allow_wildcard, "ttl": profile.dns_ttl,
            "timeout": profile.api_timeout, "eab_kid": profile.eab_kid,
            "eab_hmac_set": bool(profile.eab_hmac), "api_key_set": bool(profile.api_key),
            "account_url": profile.account_url, "last_test_ok": profile.last_test_ok,
            "last_test_at": profile.last_test_at.isoformat() if profile.last_test_at else None,
            "last_test_message": profile.last_test_message, "preferred_chain": profile.preferred_chain,
            "fallbacks": [p.name for p in failover.profile_fallbacks(profile)],
            "health": failover.health_line(profile) or "ok",
            "certificates": counts.get(profile.id, 0)}


@ca.command("list", help="List CA profiles (secrets are never shown).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def list_profiles(as_json: bool) -> None:
    counts = service.certificate_counts()
    rows = [_row(p, counts) for p in service.all_profiles()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        test = "never tested" if r["last_test_ok"] is None else ("API is available" if r["last_test_ok"] else "test failing")
        click.echo(f"{r['name']}\t{r['module']}\t{r['directory_url']}\t{r['email']}\t{r['dns_zone']}\t{test}\t{r['certificates']} certificates")


def _profile_options(fn):
    options = [
        click.option("--description"),
        click.option("--ca", "ca_key", help="The module's CA key: letsencrypt: staging|production; zerossl: production."),
        click.option("--directory-url", help="custom module: the ACME directory URL."),
        click.option("--email", help="Email address for the ACME account."),
        click.option("--dns-zone", help="The technical zone, e.g. acme.example.com."),
        click.option("--eab-kid", help="EAB Key ID."),
        click.option("--eab-hmac", help="EAB HMAC key (base64url or base64). Prefer --eab-hmac-stdin: argv is visible to other users."),
        click.option("--eab-hmac-stdin", is_flag=True, help="Read the EAB HMAC key from standard input."),
        click.option("--api-key", help="ZeroSSL account API access key."),
        click.option("--allow-wildcard/--no-allow-wildcard", default=None),
        click.option("--ttl", "dns_ttl", type=str, help=f"DNS record TTL, {service.TTL_MIN}-{service.TTL_MAX} s (30-60 recommended)."),
        click.option("--timeout", "api_timeout", type=str, help=f"API timeout, {service.TIMEOUT_MIN}-{service.TIMEOUT_MAX} s."),
        click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False), help="PEM file to trust for the CA's TLS."),
        click.option("--fallback", "fallbacks", multiple=True, metavar="NAME",
                     help="Default fallback CA profile for this profile's certificates (repeat, in order)."),
        click.option("--no-fallbacks", is_flag=True, help="Clear the default fallback list."),
        click.option("--preferred-chain", help="Prefer the alternate chain whose top certificate is issued by this "
                                               "name (CN, or part of the DN), e.g. 'ISRG Root X1'; '' for the CA's default."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _values(profile, given: dict) -> dict:
    """The profile's current values (if any) with the given options laid over them."""
    values = {} if profile is None else {"name": profile.name, "description": profile.description, "ca_key": profile.ca_key,
              "directory_url": profile.directory_url, "email": profile.email,
              "eab_kid": profile.eab_kid, "dns_zone": profile.dns_zone,
              "allow_wildcard": profile.allow_wildcard, "dns_ttl": profile.dns_ttl,
              "api_timeout": profile.api_timeout, "ca_bundle": profile.ca_bundle}
    if given.pop("eab_hmac_stdin", False):
        # All of it: a key copied from a mail may be wrapped; validation joins the lines.
        given["eab_hmac"] = sys.stdin.read().strip()
    fallbacks, clear = given.pop("fallbacks", ()), given.pop("no_fallbacks", False)
    if fallbacks or clear:  # neither given: the list stays as it is
        values["fallbacks"] = list(fallbacks)
    bundle = given.pop("ca_bundle", None)
    if bundle:
        with open(bundle) as fh:
            values["ca_bundle"] = fh.read()
    values.update({k: v for k, v in given.items() if v is not None})
    if values.get("allow_wildcard") in (False, None):
        values["allow_wildcard"] = ""
    return values


@ca.command("add", help="Create a CA profile and save its fields in one step.")
@click.option("--name", required=True)
@click.option("--module", required=True, help="letsencrypt, zerossl, custom, or an installed module id.")
@_profile_options
@with_appcontext
def add(name: str, module: str, **given) -> None:
    try:
        values = {**_values(None, given), "name": name, "module": module}
        profile = service.create(values, complete=True)
    except SSLManagerError as exc:
        fail(exc)
    click.echo(f"CA profile {profile.name!r} saved (id {profile.id}). Test it: sslmanager ca test {profile.name!r}")


@ca.command("edit", help="Change fields of a CA profile (only the options given).")
@click.argument("name")
@click.option("--name", "new_name", help="Rename the profile.")
@_profile_options
@with_appcontext
def edit(name: str, new_name: str | None, **given) -> None:
    try:
        profile = service.by_name(name)
        values = _values(profile, given)
        if new_name:
            values["name"] = new_name
        service.update(profile, values)
    except SSLManagerError as exc:
        fail(exc)
    click.echo(f"CA profile {profile.name!r} saved.")


@ca.command("test", help="Save and Test from the command line: exit 0 with the endpoints when "
                         "the API is available, exit 1 with the diagnosis otherwise.")
@click.argument("name")
@with_appcontext
def test(name: str) -> None:
    try:
        profile = service.by_name(name)
    except SSLManagerError as exc:
        fail(exc)
    result = service.test(profile)
    if not result.ok:
        click.echo(f"Test failed at {result.step or 'test'}: {result.message}", err=True)
        if result.detail:
            click.echo(f"CA said: {result.detail}", err=True)
        if result.url:
            click.echo(f"URL: {result.url}", err=True)
        if result.hint:
            click.echo(f"hint: {result.hint}", err=True)
        sys.exit(1)
    click.echo("API is available")
    for key, url in result.directory.endpoints.items():
        click.echo(f"  {key}: {url}")
    for key, value in result.directory.meta.items():
        click.echo(f"  meta.{key}: {value}")
    for key, value in result.directory.other.items():
        click.echo(f"  other entry (not an endpoint, never contacted) {key}: {value}")
    if result.account_url:
        click.echo(f"Account: {result.account_url} ({result.account_status})")
    for note in result.notes:
        click.echo(note)


@ca.command("delete", help="Delete a CA profile (refused while certificates use it).")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def delete(name: str, yes: bool) -> None:
    try:
        profile = service.by_name(name)
        if not yes:
            click.confirm(f"Delete CA profile {profile.name!r}?", abort=True)
        service.delete(profile)
    except SSLManagerError as exc:
        fail(exc)
    click.echo(f"CA profile {name!r} deleted.")
