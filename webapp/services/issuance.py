"""Issuance, read like acme-tiny: one linear function in RFC 8555 order, one timeline line per
step, TXT cleanup in `finally`, errors that name the step, the URL and the CA's own words.

The order URL and step are saved as they happen, so a process killed at any point resumes
the same order (and keeps the same key) when the certificate is next processed. It ends with
the new version: planning the renewal, deploying, notifying and what a failure means are the
pipeline's (services/pipeline.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from cryptography import x509
from flask import current_app
from sqlalchemy import select

from .. import db
from ..acme.keys import ari_cert_id
from ..acme.client import AcmeClient, OrderInfo, account_lost, generate_account_key
from ..crypto import cert_info, key_matches_cert, split_pem_chain
from ..dns import checks
from ..errors import AcmeError, AcmeRateLimited, DnsError, SSLManagerError
from ..models import CAProfile, Certificate, CertificateVersion, DnsRecord, Status, Step, utcnow
from . import audit, ca_profiles, chains, domains, persist, zones
from .timeline import Timeline



def _account_client(cert: Certificate, profile, timeline: Timeline) -> AcmeClient:
    """The profile's account, or the certificate's own (ZeroSSL without keys)."""
    plugin = ca_profiles.plugin_for(profile)
    view = ca_profiles.view_of(profile)
    if not plugin.account_per_certificate(view):
        if not (profile.account_url and profile.account_directory == ca_profiles.directory_url(profile)):
            ca_profiles.ensure_account(profile, verify=False)  # under a lock: one account, ever
        timeline(f"account: {profile.account_url}")
        return ca_profiles.acme_client(profile, account_key=profile.account_key,
                                       account_url=profile.account_url, log=timeline)
    if not cert.account_key:
        cert.account_key = generate_account_key().decode()
        db.session().commit()
    client = ca_profiles.acme_client(profile, account_key=cert.account_key,
                                     account_url=cert.account_url, log=timeline)
    if not cert.account_url:
        eab = plugin.certificate_eab(view, timeout=profile.api_timeout)
        account = client.register(profile.email, eab_kid=eab.kid, eab_hmac=eab.hmac)
        cert.account_url = account.url
        timeline(f"account: this certificate's own account {account.url} ({eab.source})")
        db.session().commit()
    return client


def _recover_account(cert: Certificate, profile, client: AcmeClient, timeline: Timeline,
                     exc: AcmeError) -> AcmeClient:
    """The CA forgot our account (reset, deactivated, a restored backup): find or register it
    again and go on with the same issuance, on a new order."""
    lost = client.account_url or ""
    timeline(f"account: the CA no longer knows {lost} ({exc.detail or exc.message}); "
             "looking it up by its key", "warning")
    client.close()
    if ca_profiles.plugin_for(profile).account_per_certificate(ca_profiles.view_of(profile)):
        cert.account_url = ""  # this certificate's own account: register it again
        audit.record("ACME account recovered", "certificate", cert.id,
                     f"{', '.join(cert.domains)}: the CA no longer knew {lost}")
    else:
        ca_profiles.recover_account(profile, lost, log=timeline)
    cert.order_url = ""  # the lost account's order is gone with it
    db.session().commit()
    return _account_client(cert, profile, timeline)


def _open_order(client: AcmeClient, cert: Certificate, profile, timeline: Timeline) -> OrderInfo:
    """Resume the stored order, or open a new one (with the ACME profile, and `replaces` when
    this renews a certificate). Account loss is raised for the caller to repair."""
    order = None
    if cert.order_url:
        try:
            order = client.get_order(cert.order_url)
            timeline(f"resume order {order.url}: {order.status}")
        except AcmeError as exc:
            if account_lost(exc):
                raise
            timeline(f"stored order unusable ({exc.message}); opening a new one", "warning")
        if order is not None and order.status in ("invalid", "expired", "deactivated"):
            timeline(f"stored order is {order.status}; opening a new one", "warning")
            order = None
    if order is None:
        _respect_rate_limit(profile)
        order = client.new_order(cert.domains, profile=cert.acme_profile or None,
                                 replaces=_replaces(cert, profile))
        cert.order_url, cert.step = order.url, Step.ORDER_CREATED
        db.session().commit()
    return order


def _replaces(cert: Certificate, profile: CAProfile) -> str | None:
    """The ARI CertID of the version this order renews (RFC 9773 5), if any: only at the CA
    that issued it (after a failover, the other CA never saw that certificate)."""
    version = db.session().execute(
        select(CertificateVersion).filter_by(certificate_id=cert.id)
        .order_by(CertificateVersion.number.desc()).limit(1)).scalar_one_or_none()
    if version is None or version.revoked_at is not None or (version.profile_id or cert.profile_id) != profile.id:
        return None
    return ari_cert_id(x509.load_pem_x509_certificate(version.cert_pem.encode()))


@dataclass
class Issued:
    """A certificate issuance's outcome: the new version (added to the session, not committed)
    and what the CA advises on renewing it."""

    version: CertificateVersion
    renewal_info: dict | None  # RFC 9773's answer; None when the CA offers none (or it failed)
    renewal_info_error: str    # why it could not be had, else ""


def issue(cert: Certificate, profile: CAProfile | None = None) -> Issued:
    """Take a certificate in Processing through its order to a new version: account, order,
    TXT values, challenges, finalize, download, then the TXT values removed. `profile`: the CA
    profile to order from (a fallback after failing over), else the certificate's own. Raises
    SSLManagerError on failure; the caller decides what a failure means."""
    profile = profile or ca_profiles.get(cert.profile_id)
    timeline = Timeline(cert)
    timeout = current_app.config["SSLMANAGER_ISSUANCE_TIMEOUT"]
    deadline = time.monotonic() + timeout
    # dns-persist-01 writes no DNS: it needs no technical zone provider.
    provider = (None if cert.validation == persist.PERSIST else
                zones.provider_for(profile.dns_zone, timeout=profile.api_timeout))
    added: list[tuple[str, str]] = []
    client = None
    try:
        # 1. Account (RFC 8555 7.3): the profile's, made once and reused.
        client = _account_client(cert, profile, timeline)

        # 2. Order (7.4): resume the stored one, or open a new one. A CA that forgot the
        #    account is repaired once per attempt (RFC 8555 7.3.1), then ordered from again.
        try:
            order = _open_order(client, cert, profile, timeline)
        except AcmeError as exc:
            if not account_lost(exc):
                raise
            client = _recover_account(cert, profile, client, timeline, exc)
            order = _open_order(client, cert, profile, timeline)

        # 3. Authorizations (7.5): every TXT value in one DNS update, add never replace;
        #    dns-persist-01 needs no DNS write at all (the owner's record stays as it is).
        if order.status == "pending":
            persistent = cert.validation == persist.PERSIST
            challenges = client.challenges(order, persist.PERSIST if persistent else "dns-01")
            if challenges and persistent:
                persist.learn(profile, challenges)
                timeline(f"dns-persist-01: no DNS write; the CA reads "
                         f"{', '.join(sorted({c.txt_name for c in challenges}))}")
                db.session().commit()  # hold no write transaction while the CA validates
                client.answer_challenges(challenges)
            elif challenges:
                added = [(domains.cname_target(domains.base_domain(c.identifier), profile.dns_zone),
                          c.txt_value) for c in challenges]
                db.session().commit()  # SQLite has one writer: the builtin provider writes next
                provider.add_txt(added, profile.dns_ttl)
                _remember_records(cert, profile.dns_zone, added, provider.name, profile.dns_ttl)
                timeline(f"dns: {len(added)} TXT value{'s' if len(added) != 1 else ''} added in "
                         f"{profile.dns_zone} via {provider.name}")
                cert.step = Step.TXT_WRITTEN
                db.session().commit()
                # 4. Every authoritative server answers before the CA asks (it asks from several places).
                servers = provider.authoritative_servers()
                if servers:
                    checks.wait_for_txt(servers, added, deadline=min(deadline, time.monotonic() + 120))
                    timeline(f"dns: served by {', '.join(f'{h}:{p}' for h, p in servers)}")
                # 5. Answer every challenge at once (7.5.1), then poll until ready.
                client.answer_challenges(challenges)
            order = client.wait_order_ready(order.url, deadline=deadline)
            timeline(_validated_by(cert, profile, challenges))

        # 6. Finalize (7.4) with the stored CSR, and wait for the certificate.
        if order.status == "ready":
            cert.step = Step.FINALIZING
            db.session().commit()
            order = client.finalize(order, cert.csr, deadline=deadline)
        elif order.status == "processing":
            order = client.wait_order_ready(order.url, deadline=deadline)

        # 7. Download (7.4.2), with alternate chains.
        fullchain, alternates = client.download(order)
        chain = chains.choose(fullchain, alternates, profile.preferred_chain)  # by the top issuer's name
        fullchain, alternates = chain.fullchain, chain.alternates
        timeline(chain.note, "warning" if chain.matched is False else "info")
        leaf, _chain = split_pem_chain(fullchain)
        if not key_matches_cert(cert.private_key, leaf):
            raise AcmeError("the CA returned a certificate for another key",
                            step="download certificate", url=order.url)
        # 8. What the CA advises on renewing it (RFC 9773 4.1), for the plan made after this.
        renewal_info, renewal_info_error = _renewal_info(client, leaf)
        account_url = client.account_url or ""
    finally:
        if added:
            _commit_or_rollback()  # one writer on SQLite: free it for the provider
            try:
                provider.remove_txt(added)
                timeline(f"dns: removed the {len(added)} TXT value{'s' if len(added) != 1 else ''} added")
                _forget_records(cert, added, provider.name)
            except DnsError as exc:  # the sweeper removes what is left; never mask the real error
                timeline(f"dns: cleanup failed ({exc}); the sweeper will remove them", "warning")
        if client is not None:
            client.close()
        db.session().commit()
    # Not committed here: the caller saves the version together with its renewal plan.
    version = _store_version(cert, fullchain, alternates, order.url, account_url)
    version.chain_choice = chain.note.removeprefix("chain: ")
    timeline(f"active: serial {cert.serial}, valid until {cert.not_after:%Y-%m-%d %H:%M} UTC "
             f"({time.monotonic() - timeline.started:.2f}s)")
    return Issued(version, renewal_info, renewal_info_error)


def _validated_by(cert: Certificate, profile, challenges) -> str:
    """The timeline's line on which method validated the names."""
    if not challenges:
        return "validated: every authorization was already valid (the CA reused them)"
    if cert.validation == persist.PERSIST:
        return (f"validated by dns-persist-01: the CA accepted the _validation-persist record of "
                f"{', '.join(sorted({c.identifier for c in challenges}))}")
    return (f"validated by dns-01 through the CNAMEs into {profile.dns_zone}: "
            f"{', '.join(sorted({c.identifier for c in challenges}))}")


def _renewal_info(client: AcmeClient, leaf: str) -> tuple[dict | None, str]:
    """ARI for the new certificate, or None when the CA offers none; advice, so a failure is
    said (the second value), not raised."""
    try:
        return client.renewal_info(leaf), ""
    except SSLManagerError as exc:
        return None, exc.message


def _commit_or_rollback() -> None:
    """Commit what the timeline holds; after a failed flush, give the transaction up instead."""
    try:
        db.session().commit()
    except Exception:  # the original error is already on its way up: don't mask it
        db.session().rollback()


def _respect_rate_limit(profile) -> None:
    """No new order while the CA's rate limit for this profile lasts (stored: survives restarts)."""
    until = profile.rate_limited_until
    if until is not None and until > utcnow():
        raise AcmeRateLimited(f"rate limited until {until:%Y-%m-%d %H:%M:%S} UTC", step="new order",
                              retry_after=(until - utcnow()).total_seconds(),
                              hint="The CA asked us to wait; SSL Manager orders again after that time.")


def _remember_records(cert, zone, records, provider_name, ttl) -> None:
    """Note TXT values written through external providers (the builtin one stores its own),
    so the sweeper can remove them if this process dies before `finally`."""
    if provider_name == "builtin":
        return
    for name, value in records:
        db.session().add(DnsRecord(zone=zone, name=name, value=value, ttl=ttl,
                                   certificate_id=cert.id))


def _forget_records(cert, records, provider_name) -> None:
    if provider_name == "builtin":
        return
    for name, value in records:
        db.session().query(DnsRecord).filter_by(certificate_id=cert.id, name=name, value=value).delete()


def _store_version(cert: Certificate, fullchain: str, alternates: list[str], order_url: str,
                   account_url: str) -> CertificateVersion:
    leaf, chain = split_pem_chain(fullchain)
    info = cert_info(leaf)
    number = 1 + (db.session().query(CertificateVersion).filter_by(certificate_id=cert.id).count())
    version = CertificateVersion(
        certificate_id=cert.id, number=number, cert_pem=leaf, chain_pem=chain,
        alternates=alternates, private_key=cert.private_key, serial=info.serial,
        issuer=info.issuer, not_before=info.not_before, not_after=info.not_after,
        order_url=order_url, account_url=account_url)
    db.session().add(version)
    cert.status, cert.step, cert.order_url = Status.ACTIVE, "", ""
    cert.serial, cert.not_before, cert.not_after = info.serial, info.not_before, info.not_after
    cert.last_error, cert.last_error_hint, cert.attempts, cert.failing_since = "", "", 0, None
    cert.next_run_at = None
    audit.record("certificate issued" if number == 1 else "certificate renewed", "certificate",
                 cert.id, f"{', '.join(cert.domains)}: serial {info.serial}")
    return version


