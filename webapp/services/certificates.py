"""Certificates: create, CSR, CNAME instructions, processing with a claim, search, downloads,
revoke, delete, and reissue under another CA profile."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import defer

from .. import db
from ..crypto import KEY_TYPES, generate_private_key, make_csr, pkcs12
from ..errors import Conflict, NotFound, SSLManagerError, ValidationError
from ..models import CAProfile, Certificate, CertificateVersion, TimelineEvent, utcnow
from . import audit, ca_profiles, dns_manager, domains, issuance

STATUSES = ("draft", "csr", "pending", "processing", "active", "failed", "expired", "revoked")
FINAL = {"active", "failed", "expired", "revoked"}
# RFC 5280 CRLReason codes a CA accepts for revocation by the subscriber.
REVOCATION_REASONS = {0: "unspecified", 1: "keyCompromise", 3: "affiliationChanged",
                      4: "superseded", 5: "cessationOfOperation"}
log = logging.getLogger("sslmanager.certificates")
HOLDER = f"{socket.gethostname()}:{os.getpid()}"  # this process; a claim's holder adds the thread
CLAIM_SECONDS = 90      # a dead holder's claim ends this long after its last heartbeat
HEARTBEAT_SECONDS = 30  # a live holder renews its claims this often
# (profile id, seconds it may wait) -> the context a pass runs in; bulk.SlotsBusy when none came
Hold = Callable[[int, float | None], AbstractContextManager]


def get(cert_id: int) -> Certificate:
    cert = db.session().get(Certificate, cert_id)
    if cert is None:
        raise NotFound(f"No certificate with id {cert_id}.", hint="`sslmanager cert list` shows them.")
    return cert


def create(values: dict[str, Any]) -> Certificate:
    """A Draft from the form: domains, CA profile, key type, auto-renew, ACME profile."""
    errors: dict[str, str] = {}
    profile = None
    try:
        profile = ca_profiles.get(int(values.get("profile_id") or 0))
    except (NotFound, ValueError):
        errors["profile_id"] = "Choose a CA profile."
    key_type = values.get("key_type") or "ec-p256"
    if key_type not in KEY_TYPES:
        errors["key_type"] = f"Choose one of: {', '.join(KEY_TYPES.values())}."
    names: list[str] = []
    if profile is not None:
        plugin = ca_profiles.registry().plugins.get(profile.module)
        names, problems = domains.parse(values.get("domains", ""), allow_wildcard=profile.allow_wildcard,
                                        max_names=plugin.max_names if plugin else 100)
        if problems:
            errors["domains"] = " ".join(problems)
        if not profile.dns_zone or not profile.email:
            errors["profile_id"] = (f"The CA profile {profile.name} is not complete: fill in its email "
                                    "and DNS Zone, then Save and Test.")
        elif profile.last_test_ok is False:
            errors["profile_id"] = (f"The CA profile {profile.name} fails its test "
                                    f"({profile.last_test_message}); fix it and Save and Test first.")
        acme_profile = (values.get("acme_profile") or "").strip()
        offered = (profile.directory_meta or {}).get("profiles") or {}
        if acme_profile and acme_profile not in offered:
            errors["acme_profile"] = (f"The CA offers no profile {acme_profile!r}"
                                      + (f"; choose one of {', '.join(offered)}." if offered else "."))
    if errors:
        raise ValidationError(errors)
    cert = Certificate(profile_id=profile.id, domains=names, common_name=names[0],
                       search_text=" ".join(names + [domains.to_unicode(n) for n in names]).lower(),
                       status="draft", key_type=key_type,
                       auto_renew=_truthy(values.get("auto_renew", "1")),
                       acme_profile=(values.get("acme_profile") or "").strip(),
                       reuse_key=_truthy(values.get("reuse_key")))
    db.session().add(cert)
    db.session().flush()
    for base in domains.challenge_bases(names):
        domains.label_for(base, profile.dns_zone)  # fixed now: the instructions never change
    audit.record("certificate created", "certificate", cert.id, ", ".join(names))
    db.session().commit()
    return cert


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "on", "yes", "y"}


def generate_csr(cert: Certificate) -> Certificate:
    """A new private key (encrypted at rest) and CSR: Draft → CSR."""
    if cert.status not in ("draft", "csr", "failed"):
        raise Conflict(f"The certificate is {cert.status}; a CSR is made for a draft.")
    if not (cert.reuse_key and cert.private_key):
        cert.private_key = generate_private_key(cert.key_type)
    cert.csr = make_csr(cert.private_key, cert.domains)
    cert.status = "csr"
    issuance.Timeline(cert)(f"csr: new {KEY_TYPES[cert.key_type]} key and CSR for {', '.join(cert.domains)}")
    db.session().commit()
    return cert


def request(cert: Certificate) -> Certificate:
    """CSR → Pending (CNAME): the scheduler takes it from here once the CNAMEs resolve. From
    Failed this is Retry: a new key (unless Reuse key) and CSR, then Pending again."""
    retry = cert.status == "failed"
    if cert.status in ("draft", "failed"):
        generate_csr(cert)
    if cert.status != "csr":
        raise Conflict(f"The certificate is {cert.status}; only a certificate with a CSR can be requested.")
    cert.status, cert.next_run_at, cert.attempts = "pending", utcnow(), 0
    cert.last_error = cert.last_error_hint = ""
    cert.failing_since = None
    issuance.Timeline(cert)("pending: waiting for the _acme-challenge CNAMEs")
    if retry:
        audit.record("certificate retried", "certificate", cert.id, ", ".join(cert.domains))
    db.session().commit()
    return cert


@dataclass
class CnameInstruction:
    domain: str
    domain_unicode: str
    name: str
    target: str
    record: str  # the zone-file line to paste


def instructions(cert: Certificate) -> list[CnameInstruction]:
    """The one CNAME per base domain the domain owner must create."""
    zone = ca_profiles.get(cert.profile_id).dns_zone
    out = []
    for base in domains.challenge_bases(cert.domains):
        target = domains.cname_target(base, zone)
        out.append(CnameInstruction(base, domains.to_unicode(base), f"_acme-challenge.{base}", target,
                                    f"_acme-challenge.{base}. IN CNAME {target}."))
    return out


# -- processing --------------------------------------------------------------------------------

def current_holder() -> str:
    """Who is working: this process and thread (two threads of one process never share a
    certificate either)."""
    return f"{HOLDER}:{threading.get_ident()}"


def claim(cert_id: int, holder: str | None = None, seconds: int = CLAIM_SECONDS) -> bool:
    """Take the certificate for this thread, so one worker at a time works on it; the claim is
    renewed by a heartbeat while held and ends `seconds` after the last one if the holder dies.
    PostgreSQL: a row lock with SKIP LOCKED (a busy row is skipped, not waited for); SQLite:
    the same atomic conditional update without the lock."""
    holder = holder or current_holder()
    s = db.session()
    now = utcnow()
    free = or_(Certificate.claimed_until.is_(None), Certificate.claimed_until < now,
               Certificate.claimed_by == holder)
    if s.get_bind(Certificate).dialect.name == "postgresql":
        locked = s.execute(select(Certificate.id).where(Certificate.id == cert_id, free)
                           .with_for_update(skip_locked=True)).first()
        if locked is None:
            s.rollback()
            return False
    result = s.execute(update(Certificate).where(Certificate.id == cert_id, free)
                       .values(claimed_by=holder, claimed_until=now + timedelta(seconds=seconds))
                       .execution_options(synchronize_session=False))
    s.commit()
    if result.rowcount == 1:
        _heartbeat().hold(cert_id, holder, seconds)
    return result.rowcount == 1


def release(cert_id: int, holder: str | None = None) -> None:
    holder = holder or current_holder()
    _heartbeat().drop(cert_id, holder)
    db.session().execute(update(Certificate).where(Certificate.id == cert_id, Certificate.claimed_by == holder)
                         .values(claimed_by="", claimed_until=None)
                         .execution_options(synchronize_session=False))
    db.session().commit()


class _Heartbeat:
    """Renews this app's held claims every HEARTBEAT_SECONDS from one thread (started with the
    first claim, gone with the last), straight on the engine: no session, no app context."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.held: dict[tuple[int, str], int] = {}  # (certificate id, holder) -> claim seconds
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    def hold(self, cert_id: int, holder: str, seconds: int) -> None:
        with self.lock:
            if self.pid != os.getpid():  # a forked child (gunicorn): the parent's thread is not here
                self.held, self.thread, self.pid = {}, None, os.getpid()
            self.held[(cert_id, holder)] = seconds
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="sslm-claims", daemon=True)
                self.thread.start()

    def drop(self, cert_id: int, holder: str) -> None:
        with self.lock:
            self.held.pop((cert_id, holder), None)

    def _run(self) -> None:
        table = Certificate.__table__
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with self.lock:
                if not self.held:
                    self.thread = None
                    return
                held = dict(self.held)
            try:
                now = utcnow()
                with self.engine.begin() as conn:
                    for (cert_id, holder), seconds in held.items():
                        conn.execute(update(table).where(table.c.id == cert_id, table.c.claimed_by == holder)
                                     .values(claimed_until=now + timedelta(seconds=seconds)))
            except Exception:  # a busy or unreachable database: the next beat tries again
                log.warning("could not renew %d certificate claims", len(held), exc_info=True)


def _heartbeat() -> _Heartbeat:
    state = current_app.extensions["sslmanager"]
    return state.extra.get("claims") or state.extra.setdefault("claims", _Heartbeat(state.engine))


def check_cnames(cert: Certificate) -> bool:
    """Pending: check every CNAME; move to Processing when all resolve into the technical zone."""
    report = issuance.cname_report(cert)
    bad = [(f"{c.name}: {c.message}", c.fix) for c in report if not c.ok]
    if not bad:  # the CNAMEs are right: would the CA refuse anyway (CAA)?
        bad = [(problem, "") for problem in dns_manager.blocking_problems(cert)]
    if bad:
        message = " ".join(m for m, _ in bad)
        if message != cert.last_error:
            issuance.Timeline(cert)(f"pending: {message}", "warning")
        cert.last_error, cert.last_error_hint = message, " ".join(f for _, f in bad if f)
        cert.next_run_at = utcnow() + timedelta(seconds=current_app.config["SSLMANAGER_CNAME_POLL_INTERVAL"])
        db.session().commit()
        return False
    cert.status, cert.step, cert.last_error, cert.last_error_hint = "processing", "", "", ""
    issuance.Timeline(cert)("processing: every CNAME resolves into the technical zone")
    db.session().commit()
    return True


def process(cert_id: int, holder: str | None = None) -> str:
    """Run the pipeline once for one certificate: CNAME check, then issuance. Returns the status
    (or "busy" when another process or thread holds it)."""
    if not claim(cert_id, holder):
        return "busy"
    try:
        cert = get(cert_id)
        db.session().refresh(cert)
        if cert.status == "csr":
            request(cert)
        if cert.status == "pending" and not check_cnames(cert):
            return cert.status
        if cert.status != "processing":
            return cert.status
        try:
            issuance.issue(cert)
        except SSLManagerError as exc:
            db.session().rollback()
            issuance.handle_failure(get(cert_id), exc)
        return get(cert_id).status
    finally:
        db.session().rollback()
        release(cert_id, holder)


def process_until_final(cert_id: int, wait: float, hold: Hold | None = None) -> str:
    """Process now and keep at it (CNAME re-checks, retries) until final or `wait` seconds pass.
    `hold(profile_id, seconds)`: a context each pass runs in (the service's per-CA slots), not
    the waits between passes."""
    end = time.monotonic() + wait
    delay = 0.2
    while True:
        status = _one_pass(cert_id, hold, max(0.0, end - time.monotonic()))
        cert = get(cert_id)
        if status in FINAL or time.monotonic() >= end:
            return cert.status
        time.sleep(min(delay, max(0.0, end - time.monotonic())))
        delay = min(delay * 2, 5.0)


def process_now(cert_id: int, wait: float = 0, hold: Hold | None = None,
                say: Callable[[str], None] | None = None) -> Certificate:
    """`cert process`: a Draft or CSR is requested first, a Failed one requested again (the
    page's Retry, said through `say`); then one pass, or passes until final for up to `wait`
    seconds. Returns the certificate as it ends (NotFound for an unknown ID)."""
    cert = get(cert_id)
    if cert.status == "failed":
        request(cert)
        if say:
            say(f"Certificate {cert_id} was Failed: requested again, as Retry on its page does "
                f"({'same key' if cert.reuse_key else 'new key'} and CSR).")
    elif cert.status in ("draft", "csr"):
        request(cert)
    if wait:
        process_until_final(cert_id, wait, hold)
    else:
        _one_pass(cert_id, hold)
    return get(cert_id)


def _one_pass(cert_id: int, hold: Hold | None, patience: float | None = None) -> str:
    """process(), inside `hold` when given; a pass that gets no slot within `patience` seconds
    (default: one issuance's timeout) does nothing (the scheduler takes the certificate later)
    and says so in the timeline."""
    if hold is None:
        return process(cert_id)
    from .bulk import SlotsBusy
    if patience is None:
        patience = float(current_app.config["SSLMANAGER_ISSUANCE_TIMEOUT"])
    cert = get(cert_id)
    profile_id, status = cert.profile_id, cert.status
    db.session().commit()  # no transaction held open while waiting for a slot
    started = time.monotonic()
    try:
        with hold(profile_id, patience):
            return process(cert_id)
    except SlotsBusy:
        issuance.Timeline(get(cert_id))(
            f"every slot for this CA stayed busy for {time.monotonic() - started:.0f} s "
            f"(SSLMANAGER_CONCURRENCY_PER_CA); the scheduler takes it up later", "warning")
        db.session().commit()
        return status


def due_for_processing(limit: int = 200) -> list[int]:
    """Pending or Processing certificates whose next look is due."""
    now = utcnow()
    rows = db.session().execute(
        select(Certificate.id).where(Certificate.status.in_(("pending", "processing")),
                                     or_(Certificate.next_run_at.is_(None), Certificate.next_run_at <= now))
        .order_by(Certificate.next_run_at).limit(limit))
    return [r[0] for r in rows]


def process_in_background(*cert_ids: int) -> None:
    """Start processing in one worker thread with its own app contexts (the "Check now" and
    "Renew now" buttons): a few at a time per CA profile, each pass within the per-CA bound
    the process's scheduler keeps. What waits too long for a slot, the scheduler takes later."""
    from .bulk import ca_slots, per_ca
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    ids = list(cert_ids)
    actor = audit.current_actor()  # the admin who pressed it: the thread has no request

    def run() -> None:
        with audit.acting_as(actor):  # per_ca's threads copy the context, and so the actor
            slots = ca_slots(app)
            per_ca(app, ids, lambda cert_id: _one_pass(cert_id, slots.held), limit=slots.per_ca)
    threading.Thread(target=run, name=f"sslm-cert-{ids[0]}", daemon=True).start()


# -- listing and detail ------------------------------------------------------------------------

def search(query: str = "", status: str = "", page: int = 1, per_page: int = 50):
    """One page of certificates (newest first) and the total, searched on the server."""
    # Lists never load (and so never decrypt) keys: secrets stay out of list requests.
    stmt = select(Certificate).options(defer(Certificate.private_key), defer(Certificate.account_key),
                                       defer(Certificate.csr))
    count = select(func.count()).select_from(Certificate)
    if query:
        like = f"%{query.strip().lower()}%"
        stmt, count = stmt.where(Certificate.search_text.like(like)), count.where(Certificate.search_text.like(like))
    if status in STATUSES:
        stmt, count = stmt.where(Certificate.status == status), count.where(Certificate.status == status)
    total = db.session().scalar(count)
    rows = db.session().execute(stmt.order_by(Certificate.id.desc())
                                .offset((max(page, 1) - 1) * per_page).limit(per_page)).scalars().all()
    return rows, total


def versions(cert: Certificate) -> list[CertificateVersion]:
    return list(db.session().execute(select(CertificateVersion).filter_by(certificate_id=cert.id)
                                     .order_by(CertificateVersion.number.desc())).scalars())


def current_version(cert: Certificate) -> CertificateVersion | None:
    return db.session().execute(select(CertificateVersion).filter_by(certificate_id=cert.id)
                                .order_by(CertificateVersion.number.desc()).limit(1)).scalar_one_or_none()


def timeline(cert: Certificate, limit: int = 200) -> list[TimelineEvent]:
    return list(db.session().execute(select(TimelineEvent).filter_by(certificate_id=cert.id)
                                     .order_by(TimelineEvent.id.desc()).limit(limit)).scalars())[::-1]


def days_remaining(cert: Certificate) -> int | None:
    if cert.not_after is None:
        return None
    return (cert.not_after - utcnow()).days


def export_files(cert: Certificate, version: CertificateVersion | None = None) -> dict[str, str]:
    """cert.pem, chain.pem, fullchain.pem, privkey.pem of the current (or given) version."""
    version = version or current_version(cert)
    if version is None:
        raise Conflict("The certificate has not been issued yet; there is nothing to download.")
    return {"cert.pem": version.cert_pem, "chain.pem": version.chain_pem,
            "fullchain.pem": version.cert_pem + version.chain_pem, "privkey.pem": version.private_key}


def export_pkcs12(cert: Certificate, password: str, *, legacy: bool = False) -> bytes:
    """The current version as PKCS#12: AES-256, or 3DES/SHA-1 for older systems (legacy)."""
    if len(password) < 8:
        raise ValidationError({"password": "Use a PKCS#12 password of at least 8 characters."})
    files = export_files(cert)
    return pkcs12(files["privkey.pem"], files["cert.pem"], files["chain.pem"], password, cert.common_name,
                  legacy=legacy)


def write_export(cert: Certificate, out_dir: str) -> list[str]:
    """Write the PEM files into out_dir atomically; the key with mode 0600."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, text in export_files(cert).items():
        path = os.path.join(out_dir, name)
        tmp = f"{path}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if name == "privkey.pem" else 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
        written.append(path)
    return written


def revoke(cert: Certificate, reason: int = 0) -> None:
    """Revoke the current version at the CA with an RFC 5280 reason → Revoked."""
    if reason not in REVOCATION_REASONS:
        raise ValidationError({"reason": f"Choose a reason: {', '.join(f'{k} {v}' for k, v in REVOCATION_REASONS.items())}."})
    version = current_version(cert)
    if cert.status != "active" or version is None:
        raise Conflict(f"Only an Active certificate can be revoked; this one is {cert.status}.")
    profile = ca_profiles.get(cert.profile_id)
    timeline_ = issuance.Timeline(cert)
    key, url = (cert.account_key, cert.account_url) if cert.account_url else (profile.account_key, profile.account_url)
    client = ca_profiles.acme_client(profile, account_key=key, account_url=url, log=timeline_)
    try:
        client.revoke(version.cert_pem, reason)
    finally:
        client.close()
    version.revoked_at = utcnow()
    cert.status = "revoked"
    audit.record("certificate revoked", "certificate", cert.id,
                 f"{', '.join(cert.domains)}: {REVOCATION_REASONS[reason]}")
    db.session().commit()


def delete(cert: Certificate, confirm: str = "") -> None:
    """Delete; an Active certificate only with its first name typed as confirmation."""
    if cert.status == "active" and confirm.strip().lower() != cert.common_name:
        raise ValidationError({"confirm": f"This certificate is Active: type {cert.common_name} to delete it."})
    dns_manager.remove_customer_cnames(cert)  # only the CNAMEs SSL Manager itself made
    audit.record("certificate deleted", "certificate", cert.id, ", ".join(cert.domains))
    db.session().execute(TimelineEvent.__table__.delete().where(TimelineEvent.certificate_id == cert.id))
    db.session().execute(CertificateVersion.__table__.delete().where(CertificateVersion.certificate_id == cert.id))
    db.session().delete(cert)
    db.session().commit()


def reissue_under(cert: Certificate, profile_id: int) -> Certificate:
    """Migration: a new certificate with the same names under another profile; the old one
    stays until the new one is Active (then delete or revoke it yourself)."""
    profile = ca_profiles.get(profile_id)
    new = create({"profile_id": profile.id, "domains": " ".join(cert.domains), "key_type": cert.key_type,
                  "auto_renew": "1" if cert.auto_renew else "", "acme_profile": ""})
    if profile.id == cert.profile_id:  # after a revocation or expiry: the same CA again
        audit.record("certificate issued again", "certificate", new.id,
                     f"from certificate {cert.id} ({cert.status}) under profile {profile.name}")
    else:
        audit.record("certificate reissued under another CA", "certificate", new.id,
                     f"from certificate {cert.id} to profile {profile.name}")
    db.session().commit()
    return new


def create_customer_cnames(cert: Certificate) -> list:
    """Opt-in: make the _acme-challenge CNAMEs in customer zones SSL Manager manages."""
    results = dns_manager.ensure_customer_cname(cert)
    for r in results:
        issuance.Timeline(cert)(f"customer CNAME {r.name}: {r.status} ({r.message})")
    db.session().commit()
    return results


def profiles_for_select() -> list[CAProfile]:
    return ca_profiles.all_profiles()


def profile_names(ids=None) -> dict[int, str]:
    """CA profile id -> name in one query (for a page of certificates: no per-row lookups)."""
    stmt = select(CAProfile.id, CAProfile.name)
    if ids is not None:
        ids = list(ids)
        if not ids:
            return {}
        stmt = stmt.where(CAProfile.id.in_(ids))
    return {pid: name for pid, name in db.session().execute(stmt)}
