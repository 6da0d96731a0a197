"""The pipeline: one place that takes a certificate through its passes. A Pending certificate's
CNAMEs are checked; a Processing one is issued; after issuance its renewal is planned (with the
version, in one commit), then it is deployed and notified; a failure is retried with backoff,
kept serving (a renewal) or Failed. The pages, the CLI, the scheduler and the control socket
all come here: this is the only module that calls issuance, renewals, deploy and notifications
together, and none of them calls back up.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta

from flask import current_app
from sqlalchemy import and_, or_, select

from .. import db
from ..acme.problems import problem_hint
from ..errors import AcmeError, AcmeNetworkError, AcmeRateLimited, DnsError, SSLManagerError
from ..models import Certificate, Status, utcnow
from . import (audit, certificates, claims, delegation, deploy, failover, issuance,
               notifications, persist, renewals, slots)
from .timeline import Timeline

log = logging.getLogger("sslmanager.pipeline")
FINAL = {Status.ACTIVE, Status.FAILED, Status.EXPIRED, Status.REVOKED}


# (profile id, seconds it may wait) -> the context a pass runs in; slots.SlotsBusy when none came
Hold = Callable[[int, float | None], AbstractContextManager]


def dns_problems(cert: Certificate) -> list[tuple[str, str]]:
    """(problem, fix) for each CNAME not resolving into the technical zone (or dns-persist-01
    record not authorizing this account), else for what the CA would refuse anyway (CAA); []
    when an order can go ahead."""
    bad = [(f"{c.name}: {c.message}", c.fix) for c in delegation.validation_report(cert) if not c.ok]
    if not bad:  # the CNAMEs are right: would the CA refuse anyway (CAA)?
        bad = [(problem, "") for problem in delegation.blocking_problems(cert)]
    return bad


def check_cnames(cert: Certificate) -> bool:
    """Pending: check every CNAME; move to Processing when all resolve into the technical zone."""
    bad = dns_problems(cert)
    if bad:
        message = " ".join(m for m, _ in bad)
        if message != cert.last_error:
            Timeline(cert)(f"pending: {message}", "warning")
        cert.last_error, cert.last_error_hint = message, " ".join(f for _, f in bad if f)
        cert.next_run_at = utcnow() + timedelta(seconds=current_app.config["SSLMANAGER_CNAME_POLL_INTERVAL"])
        db.session().commit()
        return False
    cert.status, cert.step, cert.last_error, cert.last_error_hint = Status.PROCESSING, "", "", ""
    Timeline(cert)("processing: every _validation-persist record authorizes this account"
                   if cert.validation == persist.PERSIST else
                   "processing: every CNAME resolves into the technical zone")
    db.session().commit()
    return True


def recheck_dns(cert: Certificate) -> bool:
    """Before every new order past Pending (a renewal, a retry): the CNAMEs again. CAs reuse
    authorizations for less and less time (Let's Encrypt: 7 hours from 2028), so every order
    validates afresh; a broken delegation found here costs no order at the CA. A renewal
    fails as renewals do (the current version keeps serving, retried with backoff); a first
    issuance goes back to Pending."""
    bad = dns_problems(cert)
    if not bad:
        Timeline(cert)("dns: every _validation-persist record still authorizes this account (checked before the order)"
                       if cert.validation == persist.PERSIST else
                       "dns: every CNAME still resolves into the technical zone (checked before the order)")
        db.session().commit()
        return True
    if cert.serial:
        what = "dns-persist-01 record" if cert.validation == persist.PERSIST else "CNAME"
        handle_failure(cert, DnsError(f"{what} check before the order: {' '.join(m for m, _ in bad)}",
                                      step="CNAME check", hint=" ".join(f for _, f in bad if f)))
    else:
        cert.status = Status.PENDING
        cert.pending_since = cert.pending_since or utcnow()  # it was requested before: keep that time
        check_cnames(cert)
    return False


def process(cert_id: int, holder: str | None = None) -> str:
    """Run the pipeline once for one certificate: CNAME check, then issuance. Returns the status
    (or "busy" when another process or thread holds it)."""
    if not claims.claim(cert_id, holder):
        return "busy"
    try:
        cert = certificates.get(cert_id)
        db.session().refresh(cert)
        if cert.status == Status.CSR:
            certificates.request(cert)
        if cert.status == Status.PENDING:
            if not check_cnames(cert):
                return cert.status
        elif cert.status == Status.PROCESSING and not cert.order_url and not recheck_dns(cert):
            return certificates.get(cert_id).status
        if cert.status != Status.PROCESSING:
            return cert.status
        try:
            issue(cert)
        except SSLManagerError as exc:
            db.session().rollback()
            handle_failure(certificates.get(cert_id), exc)
        return certificates.get(cert_id).status
    finally:
        db.session().rollback()
        claims.release(cert_id, holder)


def issue(cert: Certificate) -> None:
    """Issuance, then what follows it: the renewal plan (saved with the version), deploy and
    notifications (after the save: their failures never undo an issued certificate)."""
    profile = failover.attempt_profile(cert)  # the primary, or a fallback after failing over
    issued = issuance.issue(cert, profile)
    failover.issued(cert, issued.version)
    renewals.plan(cert, issued.version, profile, issued.renewal_info, issued.renewal_info_error)
    db.session().commit()
    timeline = Timeline(cert)
    _never_fails(timeline, "deploy", deploy.run, cert)
    _never_fails(timeline, "notification", notifications.emit,
                 "renewed" if issued.version.number > 1 else "issued", cert)


def process_until_final(cert_id: int, wait: float, hold: Hold | None = None) -> str:
    """Process now and keep at it (CNAME re-checks, retries) until final or `wait` seconds pass.
    `hold(profile_id, seconds)`: a context each pass runs in (the service's per-CA slots), not
    the waits between passes."""
    end = time.monotonic() + wait
    delay = 0.2
    while True:
        status = _one_pass(cert_id, hold, max(0.0, end - time.monotonic()))
        cert = certificates.get(cert_id)
        if status in FINAL or time.monotonic() >= end:
            return cert.status
        time.sleep(min(delay, max(0.0, end - time.monotonic())))
        delay = min(delay * 2, 5.0)


def process_now(cert_id: int, wait: float = 0, hold: Hold | None = None,
                say: Callable[[str], None] | None = None) -> Certificate:
    """`cert process`: a Draft or CSR is requested first, a Failed one requested again (the
    page's Retry, said through `say`); then one pass, or passes until final for up to `wait`
    seconds. Returns the certificate as it ends (NotFound for an unknown ID)."""
    cert = certificates.get(cert_id)
    if cert.status == Status.FAILED:
        certificates.request(cert)
        if say:
            say(f"Certificate {cert_id} was Failed: requested again, as Retry on its page does "
                f"({'same key' if cert.reuse_key else 'new key'} and CSR).")
    elif cert.status in (Status.DRAFT, Status.CSR):
        certificates.request(cert)
    if wait:
        process_until_final(cert_id, wait, hold)
    else:
        _one_pass(cert_id, hold)
    return certificates.get(cert_id)


def start_now(cert: Certificate) -> str:
    """The API's "process now" (the page's Request, Retry and Check now in one): a Draft, CSR or
    Failed certificate is requested; a Pending one has its CNAMEs checked, and when they resolve
    (or it is Processing) its order runs in the background within the per-CA bound. Returns
    "processing", "pending" (a CNAME is not right yet: last_error says which), or the status
    that has nothing to process (active, revoked, expired)."""
    if cert.status in (Status.DRAFT, Status.CSR, Status.FAILED):
        certificates.request(cert)
    if cert.status == Status.PENDING and not check_cnames(cert):
        return "pending"
    if cert.status == Status.PROCESSING:
        process_in_background(cert.id)
        return "processing"
    return cert.status


def _one_pass(cert_id: int, hold: Hold | None, patience: float | None = None) -> str:
    """process(), inside `hold` when given; a pass that gets no slot within `patience` seconds
    (default: one issuance's timeout) does nothing (the scheduler takes the certificate later)
    and says so in the timeline."""
    if hold is None:
        return process(cert_id)
    if patience is None:
        patience = float(current_app.config["SSLMANAGER_ISSUANCE_TIMEOUT"])
    cert = certificates.get(cert_id)
    profile_id, status = failover.attempt_profile(cert).id, cert.status  # the CA it will ask
    db.session().commit()  # no transaction held open while waiting for a slot
    started = time.monotonic()
    try:
        with hold(profile_id, patience):
            return process(cert_id)
    except slots.SlotsBusy:
        Timeline(certificates.get(cert_id))(
            f"every slot for this CA stayed busy for {time.monotonic() - started:.0f} s "
            f"(SSLMANAGER_CONCURRENCY_PER_CA); the scheduler takes it up later", "warning")
        db.session().commit()
        return status


def due_for_processing(limit: int = 200) -> list[int]:
    """Pending or Processing certificates whose next look is due (and no one works on)."""
    now = utcnow()
    rows = db.session().execute(
        select(Certificate.id).where(processing_due_clause(now), claims.unclaimed(now))
        .order_by(Certificate.next_run_at).limit(limit))
    return [r[0] for r in rows]


def processing_due_clause(now):
    """SQL: a Pending or Processing certificate whose next look is due."""
    return and_(Certificate.status.in_((Status.PENDING, Status.PROCESSING)),
                or_(Certificate.next_run_at.is_(None), Certificate.next_run_at <= now))


def process_in_background(*cert_ids: int) -> None:
    """Start processing in one worker thread with its own app contexts (the "Check now" and
    "Renew now" buttons): a few at a time per CA profile, each pass within the per-CA bound
    the process's scheduler keeps. What waits too long for a slot, the scheduler takes later."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    ids = list(cert_ids)
    actor = audit.current_actor()  # the admin who pressed it: the thread has no request

    def run() -> None:
        with audit.acting_as(actor):  # per_ca's threads copy the context, and so the actor
            bound = slots.ca_slots(app)
            slots.per_ca(app, ids, lambda cert_id: _one_pass(cert_id, bound.held),
                         limit=bound.per_ca)
    threading.Thread(target=run, name=f"sslm-cert-{ids[0]}", daemon=True).start()


# -- what a failure means ------------------------------------------------------------------------

def handle_failure(cert: Certificate, exc: SSLManagerError) -> None:
    """Decide what a failed attempt means: fail over to the next CA profile (services/failover),
    wait and retry, or Failed with the reason. A failed renewal never takes the current version
    away: it stays Active and is retried with backoff."""
    timeline = Timeline(cert)
    now = utcnow()
    cert.attempts += 1
    cert.failing_since = cert.failing_since or now
    cert.last_error, cert.last_error_hint = str(exc), exc.hint or problem_hint(getattr(exc, "problem_type", ""))
    # Exponential backoff with jitter: minutes first, capped at six hours.
    backoff = min(60 * 2 ** (cert.attempts - 1), 6 * 3600) * random.uniform(0.8, 1.2)
    retry_after = getattr(exc, "retry_after", None) or 0
    transient = _transient(exc)
    decision = failover.decide(cert, exc, attempts_exhausted=transient and (
        cert.attempts >= current_app.config["SSLMANAGER_MAX_ATTEMPTS"]), now=now)
    delay = timedelta(seconds=max(backoff, retry_after))
    if decision.retry_within is not None:  # the CA may count as down by then: look again in time
        delay = min(delay, decision.retry_within)
    if decision.to is not None:
        if not renewals.recover_failed_renewal(cert, timedelta(0)):
            cert.next_run_at = now  # a first issuance stays Processing: the fallback's turn now
        else:
            timeline(f"renewal attempt failed, current version keeps serving; retrying now through "
                     f"{decision.to.name}: {exc}", "warning")
    elif isinstance(exc, AcmeRateLimited) and retry_after:
        until = now + timedelta(seconds=retry_after)
        cert.next_run_at = until
        timeline(f"rate limited until {until:%Y-%m-%d %H:%M:%S} UTC: {exc}", "warning")
    elif renewals.recover_failed_renewal(cert, delay):
        timeline(f"renewal attempt {cert.attempts} failed, current version keeps serving; "
                 f"retrying at {cert.next_run_at:%Y-%m-%d %H:%M} UTC: {exc}", "warning")
    elif transient and cert.attempts < current_app.config["SSLMANAGER_MAX_ATTEMPTS"]:
        cert.next_run_at = now + delay
        timeline(f"attempt {cert.attempts} failed, retrying at {cert.next_run_at:%Y-%m-%d %H:%M:%S} UTC: {exc}",
                 "warning")
    else:
        cert.status, cert.order_url, cert.next_run_at = Status.FAILED, "", None
        timeline(f"failed: {exc}", "error")
        audit.record("certificate failed", "certificate", cert.id, str(exc)[:500])
    db.session().commit()
    if decision.to is not None:
        _never_fails(timeline, "notification", lambda: notifications.emit(
            "failover", cert, reason=f"{decision.reason}; issuing through {decision.to.name}",
            error=str(exc)))
        db.session().commit()
    elif cert.serial:  # a version was issued before: this is a renewal failing (sent once a day)
        _never_fails(timeline, "notification", notifications.emit, "renewal-failed", cert)
        db.session().commit()


def _never_fails(timeline: Timeline, what: str, fn, *args) -> None:
    """Deploy and notifications run after the fact: a failure is recorded, never raised."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001  (the certificate is issued whatever happens here)
        db.session().rollback()
        log.exception("certificate %s: %s failed", timeline.cert.id, what)
        timeline(f"{what} failed: {exc}", "warning")


def _transient(exc: SSLManagerError) -> bool:
    """Worth retrying: the network, the CA's 5xx, a DNS provider hiccup."""
    return isinstance(exc, (AcmeNetworkError, AcmeRateLimited, DnsError)) or (
        isinstance(exc, AcmeError) and (exc.status or 0) >= 500)


# -- renewing now ---------------------------------------------------------------------------------

def renew(cert_id: int, *, reason: str = "due", holder: str | None = None) -> str:
    """Renew one certificate now (claimed, so one process at a time; the claim is held from
    the start of the renewal to its end, so no other node takes it in between)."""
    if not claims.claim(cert_id, holder):
        return "busy"
    try:
        cert = certificates.get(cert_id)
        if cert.status != Status.ACTIVE:
            return cert.status
        renewals.start(cert, reason=reason)
        return process(cert_id, holder)
    finally:
        claims.release(cert_id, holder)


def renew_now(cert_ids: list[int], *, reason: str = "requested") -> dict[int, str]:
    """The pages' "Renew now": each Active certificate starts its renewal here (new key and CSR,
    Processing, so the page shows it at once), then its order runs in the background within the
    per-CA bound (SSLMANAGER_CONCURRENCY_PER_CA) the scheduler keeps too. Returns id -> "started",
    "busy" (another process holds it), "missing", or the status that cannot be renewed."""
    results: dict[int, str] = {}
    for cert_id in dict.fromkeys(cert_ids):
        cert = db.session().get(Certificate, cert_id)
        if cert is None:
            results[cert_id] = "missing"
            continue
        if cert.status != Status.ACTIVE:
            results[cert_id] = cert.status
            continue
        if not claims.claim(cert_id):
            results[cert_id] = "busy"
            continue
        try:
            db.session().refresh(cert)
            if cert.status != Status.ACTIVE:
                results[cert_id] = cert.status
                continue
            renewals.start(cert, reason=reason)
            audit.record("renewal requested", "certificate", cert_id, ", ".join(cert.domains))
            db.session().commit()
            results[cert_id] = "started"
        finally:
            claims.release(cert_id)
    started = [i for i, status in results.items() if status == "started"]
    if started:
        process_in_background(*started)
    return results
