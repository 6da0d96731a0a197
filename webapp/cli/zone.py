"""`sslmanager zone ...`, `sslmanager dns serve` and `sslmanager preflight`."""
from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from ..errors import SSLManagerError
from ..services import delegation, zones as service
from .base import commands, fail, log_to_stderr


@click.group("zone", help="Technical zones and their DNS providers.")
def zone() -> None:
    pass


commands.append(zone)

_OPTION_FLAGS = {  # CLI flag -> provider option
    "server": "server", "tsig_key": "tsig_key_name", "tsig_secret": "tsig_secret",
    "tsig_algorithm": "tsig_algorithm", "api_url": "api_url", "api_key": "api_key",
    "server_id": "server_id", "dns_server": "dns_server", "listen": "listen",
    "nameservers": "nameservers", "hostmaster": "hostmaster",
}


def _provider_options(fn):
    for option in reversed([
        click.option("--server", help="rfc2136: the primary, HOST:PORT."),
        click.option("--tsig-key", help="rfc2136: TSIG key name."),
        click.option("--tsig-secret", help="rfc2136: TSIG secret (base64). Stored encrypted."),
        click.option("--tsig-algorithm", help="rfc2136: hmac-sha256 (default), hmac-sha512, ..."),
        click.option("--api-url", help="powerdns: the API URL, e.g. http://127.0.0.1:8081."),
        click.option("--api-key", help="powerdns: the API key. Stored encrypted."),
        click.option("--server-id", help="powerdns: server id (default localhost)."),
        click.option("--dns-server", help="powerdns: where it answers DNS, HOST:PORT."),
        click.option("--listen", help="builtin: where the builtin server answers, ADDR:PORT[,ADDR:PORT]."),
        click.option("--nameservers", help="builtin: NS names served for the zone (comma separated)."),
        click.option("--hostmaster", help="builtin: SOA contact."),
    ]):
        fn = option(fn)
    return fn


PROVIDERS = click.Choice(["builtin", "rfc2136", "powerdns"])


@zone.command("add", help="Configure a technical zone: where TXT records are written and how.")
@click.argument("name")
@click.option("--provider", required=True, type=PROVIDERS)
@_provider_options
@with_appcontext
def add(name, provider, **given) -> None:
    options = {_OPTION_FLAGS[k]: v for k, v in given.items() if v}
    try:
        z = service.add(name, provider, options)
    except SSLManagerError as exc:
        fail(exc)
    click.echo(f"Technical zone {z.name} ({z.provider}) saved. Check it: sslmanager zone check {z.name}")


@zone.command("edit", help="Change a zone's provider settings: only the options given change "
                           "(secrets too: one not given keeps its stored value). Then check it.")
@click.argument("name")
@click.option("--provider", type=PROVIDERS, help="Switch to another provider (give its settings).")
@click.option("--customer/--no-customer", default=None,
              help="Customer zone: SSL Manager may make _acme-challenge CNAMEs in it.")
@_provider_options
@with_appcontext
def edit(name, provider, customer, **given) -> None:
    try:
        z = service.get(name)
        provider = provider or z.provider
        options = dict(z.options or {}) if provider == z.provider else {}
        if customer is not None:
            options.pop("role", None)
            if customer:
                options["role"] = "customer"
        options.update({_OPTION_FLAGS[k]: v for k, v in given.items() if v})
        service.update(z, provider, options)
    except SSLManagerError as exc:
        fail(exc)
    ok, message = service.check(z)
    click.echo(f"Technical zone {z.name} ({z.provider}) saved. Health check: "
               + ("ok: " if ok else "failing: ") + message)
    sys.exit(0 if ok else 1)


@zone.command("delete", help="Forget a technical zone. Refused (exit 1, naming them) while "
                             "certificates order through it or it holds live values.")
@click.argument("name")
@with_appcontext
def delete(name) -> None:
    try:
        z = service.get(name)
        name = z.name
        service.delete(z)
    except SSLManagerError as exc:
        fail(exc)
    click.echo(f"Technical zone {name} deleted.")


@zone.command("list", help="List technical zones and their last health check.")
@with_appcontext
def list_zones() -> None:
    for z in service.all_zones():
        health = "never checked" if z.last_check_ok is None else ("ok" if z.last_check_ok else "failing")
        click.echo(f"{z.name}\t{z.provider}\t{health}\t{z.last_check_message}")


@zone.command("check", help="Check the zone's DNS provider (exit 1 when unhealthy).")
@click.argument("name")
@with_appcontext
def check(name) -> None:
    try:
        ok, message = service.check(service.get(name))
    except SSLManagerError as exc:
        fail(exc)
    click.echo(("ok: " if ok else "failing: ") + message)
    sys.exit(0 if ok else 1)


@click.group("dns", help="The builtin authoritative DNS server, and sweeping orphan TXT values.")
def dns_group() -> None:
    pass


commands.append(dns_group)


@dns_group.command("serve", help="Serve the builtin technical zones over UDP and TCP, one worker "
                                 "process per core sharing the port unless --workers says otherwise. "
                                 "Port 53 needs root or CAP_NET_BIND_SERVICE (setcap "
                                 "cap_net_bind_service=+ep on the Python binary, or "
                                 "AmbientCapabilities= in a systemd unit).")
@click.option("--listen", default="127.0.0.1:5353", show_default=True, help="ADDR:PORT[,ADDR:PORT]")
@click.option("--workers", type=click.IntRange(min=1), default=None, show_default="one per core",
              help="Processes sharing the port (SO_REUSEPORT); 1 serves in a single process.")
@click.option("--rate-limit", default=200.0, show_default=True, help="Queries/s per source address.")
@with_appcontext
def serve(listen, workers, rate_limit) -> None:
    # start-up: each command loads what it needs when it runs
    from ..dns.builtin.serving import default_workers
    from ..dns.builtin.serving import serve as run_server
    log_to_stderr()
    workers = workers or default_workers()
    click.echo(f"Builtin DNS serving on {listen} ({workers} worker{'s' if workers > 1 else ''})")
    run_server(current_app.extensions["sslmanager"].engine, listen, workers=workers, rate_limit=rate_limit)


@dns_group.command("sweep", help="Remove orphan TXT values from the technical zones now (the "
                                 "scheduler does it every SSLMANAGER_SWEEP_INTERVAL seconds): "
                                 "values no order in flight needs. Prints each value removed, or "
                                 "\"nothing to remove\"; exit 1 only when a zone could not be swept.")
@with_appcontext
def sweep() -> None:
    # start-up: each command loads what it needs when it runs
    from ..services import dns_manager
    report = dns_manager.sweep()
    for item in report.removed:
        owners = ", ".join(map(str, item.certificate_ids)) or "none"
        click.echo(f"removed {item.name} TXT \"{item.value}\" ({item.why}; certificates: {owners})")
    for item in report.kept:
        click.echo(f"kept {item.name} TXT \"{item.value}\": {item.why}")
    if not report.removed:
        click.echo("nothing to remove")
    for problem in report.errors:
        click.echo(f"error: {problem}", err=True)
    sys.exit(1 if report.errors else 0)


@click.command("preflight", help="Check what issuance of a certificate needs, now: each "
                                 "_acme-challenge CNAME, stale TXT records, CAA. Exit 1 on an error.")
@click.argument("cert_id", type=int)
@with_appcontext
def preflight(cert_id) -> None:
    # start-up: each command loads what it needs when it runs
    from ..services import certificates
    try:
        report = delegation.preflight(certificates.get(cert_id))
    except SSLManagerError as exc:
        fail(exc)
    for group in report.domains:
        click.echo(f"{group.domain} ({', '.join(group.names)})")
        for check in group.checks:
            click.echo(f"  {check.status.upper():7} {check.kind:5} {check.subject}: {check.diagnosis}")
            if check.fix and check.status != "ok":
                click.echo(f"          fix: {check.fix}")
    sys.exit(0 if report.ok else 1)


commands.append(preflight)
