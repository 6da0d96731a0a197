"""`sslmanager cert ...`: certificates from the command line."""
from __future__ import annotations

import json
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from ..errors import SSLManagerError
from ..models import utcnow
from ..services import ca_profiles, certificates as service, failover
from .base import commands, fail


@click.group("cert", help="Certificates: add, list, show, process, export, revoke.")
def cert() -> None:
    pass


commands.append(cert)


def _summary(c) -> dict:
    profile = ca_profiles.get(c.profile_id)
    return {"id": c.id, "domains": c.domains, "status": c.status, "ca": profile.name,
            "fallbacks": [p.name for p in failover.fallbacks(c)],
            "attempt_ca": failover.attempt_profile(c).name, "failover_reason": c.failover_reason,
            "key_type": c.key_type, "auto_renew": c.auto_renew,
            "not_after": c.not_after.isoformat() if c.not_after else None,
            "days_remaining": service.days_remaining(c), "serial": c.serial,
            "last_error": c.last_error, "step": c.step, "order_url": c.order_url,
            "acme_profile": c.acme_profile, "validation": c.validation, "renew_at": _iso(c.renew_at), "renew_reason": c.renew_reason,
            "ari": {"window_start": _iso(c.ari_window_start), "window_end": _iso(c.ari_window_end),
                    "explanation_url": c.ari_explanation_url or None,
                    "last_poll": _iso(c.ari_checked_at), "next_poll": _iso(c.ari_next_poll_at)}}


def _left(c) -> str:
    """Time left as the list's column: whole days ("45d"), or under two days the hours, minutes
    or seconds ("11h", "4m"), so a 6-day or shorter certificate does not read "0d" for a day."""
    if c.not_after is None:
        return "-"
    left = c.not_after - utcnow()
    seconds = int(left.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= 2 * size:
            return f"{int(seconds / size)}{unit}"
    return f"{seconds}s"


def _iso(when) -> str | None:
    return when.isoformat() if when else None


@cert.command("add", help="Create a certificate, make its key and CSR, and print the CNAMEs "
                          "the domain owner must create. Then it issues by itself once they exist.")
@click.option("--ca", "ca_name", required=True, help="CA profile name.")
@click.option("--key-type", default="ec-p256", show_default=True,
              type=click.Choice(["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"]))
@click.option("--no-auto-renew", is_flag=True)
@click.option("--acme-profile", default="", help="An ACME profile the CA offers (e.g. tlsserver).")
@click.option("--validation", default="cname", show_default=True,
              type=click.Choice(["cname", "persist", "dns-persist-01"]),
              help="cname: _acme-challenge CNAMEs into the technical zone; persist: one "
                   "_validation-persist TXT record per domain, set once (dns-persist-01, where "
                   "the CA offers it).")
@click.option("--create-cnames", is_flag=True, help="Create the _acme-challenge CNAMEs in customer "
              "zones SSL Manager manages (DNS Manager); they are removed with the certificate.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable): lists filter on it, API tokens "
              "may be restricted to it (e.g. the server that serves the certificate).")
@click.option("--fallback", "fallbacks", multiple=True, metavar="NAME",
              help="A fallback CA profile (repeat, in order); none: the CA profile's default list.")
@click.argument("domains", nargs=-1, required=True)
@with_appcontext
def add(ca_name, key_type, no_auto_renew, acme_profile, validation, create_cnames, tags, fallbacks, domains) -> None:
    try:
        profile = ca_profiles.by_name(ca_name)
        c = service.create({"profile_id": profile.id, "domains": " ".join(domains), "key_type": key_type,
                            "auto_renew": "" if no_auto_renew else "1", "acme_profile": acme_profile,
                            "tags": list(tags), "fallbacks": list(fallbacks), "validation": validation})
        service.request(c)
        made = service.create_customer_cnames(c) if create_cnames else []
    except SSLManagerError as exc:
        fail(exc)
    for result in made:
        click.echo(f"  {result.name}: {result.message}")
    click.echo(f"Certificate {c.id} created for {', '.join(c.domains)} (pending). Create these records:")
    for item in service.instructions(c) + service.persist_instructions(c):
        click.echo(f"  {item.record}")
    _other_zones(c)


def _other_zones(c) -> None:
    for profile, records in service.fallback_instructions(c):
        click.echo(f"Note: fallback {profile.name} uses the technical zone {profile.dns_zone}; failing "
                   "over to it needs these CNAMEs instead (a name has one CNAME):")
        for item in records:
            click.echo(f"  {item.record}")


@cert.command("fallback", help="Set a certificate's own fallback CA profiles, in order (none given: "
                               "its CA profile's default list applies again).")
@click.argument("cert_id", type=int)
@click.argument("names", nargs=-1)
@with_appcontext
def fallback(cert_id, names) -> None:
    try:
        c = service.get(cert_id)
        chosen = service.set_fallbacks(c, {"fallbacks": list(names)})
    except SSLManagerError as exc:
        fail(exc)
    click.echo(f"Certificate {c.id} falls back to: {', '.join(p.name for p in chosen) or 'nothing'}"
               + ("" if names or not chosen else " (the CA profile's default)") + ".")
    _other_zones(c)


@cert.command("list", help="List certificates.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--status", default="")
@click.option("--search", "query", default="")
@with_appcontext
def list_certs(as_json, status, query) -> None:
    rows, _ = service.search(query, status, per_page=100000)
    data = [_summary(c) for c in rows]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for c, d in zip(rows, data):
        click.echo(f"{d['id']}\t{d['status']}\t{d['ca']}\t{_left(c)}\t{', '.join(d['domains'])}")


@cert.command("show", help="Show one certificate (with --json: every field and its versions).")
@click.argument("cert_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def show(cert_id, as_json) -> None:
    try:
        c = service.get(cert_id)
    except SSLManagerError as exc:
        fail(exc)
    data = _summary(c)
    data["versions"] = [{"number": v.number, "serial": v.serial, "not_before": v.not_before.isoformat(),
                         "not_after": v.not_after.isoformat(), "issuer": v.issuer,
                         "ca": failover.issuing_profile(c, v).name, "failover_reason": v.failover_reason,
                         "revoked": v.revoked_at is not None} for v in service.versions(c)]
    data["cnames"] = [i.record for i in service.instructions(c)]
    data["persist_records"] = [i.record for i in service.persist_instructions(c)]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        click.echo(f"{key}: {value}")


@cert.command("process", help="Run the pipeline now; with --wait, keep at it until Active or "
                              "Failed. A Failed certificate is requested again first, as Retry on "
                              "its page does (a new key and CSR). Several IDs are worked on "
                              "together, a few at a time per CA (SSLMANAGER_CONCURRENCY_PER_CA, "
                              "or --concurrency). Exit 0 only when "
                              "every one is Active. When `sslmanager run` or `worker` serves this "
                              "instance, the work is handed to it (--here: do it in this process).")
@click.argument("cert_ids", nargs=-1, type=int, required=True)
@click.option("--wait", type=float, default=0, help="Seconds to keep trying (CNAME checks, retries).")
@click.option("--concurrency", type=click.IntRange(1, 64), default=None,
              help="Orders in flight per CA profile (default: SSLMANAGER_CONCURRENCY_PER_CA).")
@click.option("--here", is_flag=True, help="Work in this process even when a service runs.")
@with_appcontext
def process(cert_ids, wait, concurrency, here) -> None:
    # start-up: each command loads what it needs when it runs
    from ..services import bulk
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    sys.exit(bulk.process_and_report(app, list(cert_ids), wait, concurrency,
                                     out=click.echo, err=lambda line: click.echo(line, err=True)))


@cert.command("export", help="Write cert.pem, chain.pem, fullchain.pem and privkey.pem (0600) into DIR.")
@click.argument("cert_id", type=int)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@with_appcontext
def export(cert_id, out_dir) -> None:
    try:
        for path in service.write_export(service.get(cert_id), out_dir):
            click.echo(path)
    except SSLManagerError as exc:
        fail(exc)


@cert.command("revoke", help="Revoke the certificate at the CA.")
@click.argument("cert_id", type=int)
@click.option("--reason", type=int, default=0, show_default=True,
              help="RFC 5280 reason: 0 unspecified, 1 keyCompromise, 3 affiliationChanged, 4 superseded, 5 cessationOfOperation.")
@with_appcontext
def revoke(cert_id, reason) -> None:
    try:
        service.revoke(service.get(cert_id), reason)
    except SSLManagerError as exc:
        fail(exc)
    click.echo(f"Certificate {cert_id} revoked.")
