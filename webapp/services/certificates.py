"""Certificates: create, CSR, CNAME instructions, processing with a claim, search, downloads,
revoke, delete, and reissue under another CA profile."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import defer

from .. import db
from ..crypto import KEY_TYPES, generate_private_key, make_csr, pkcs12
from ..errors import Conflict, NotFound, ValidationError
from ..models import CAProfile, Certificate, CertificateVersion, Status, TimelineEvent, utcnow
from . import audit, ca_profiles, dns_manager, domains, failover, persist, tags
from .timeline import Timeline

STATUSES = tuple(Status)
# RFC 5280 CRLReason codes a CA accepts for revocation by the subscriber.
REVOCATION_REASONS = {0: "unspecified", 1: "keyCompromise", 3: "affiliationChanged",
                      4: "superseded", 5: "cessationOfOperation"}
log = logging.getLogger("sslmanager.certificates")


def get(cert_id: int) -> Certificate:
    cert = db.session().get(Certificate, cert_id)
    if cert is None:
        raise NotFound(f"No certificate with id {cert_id}.", hint="`sslmanager cert list` shows them.")
    return cert


def create(values: dict[str, Any]) -> Certificate:
    """A Draft from the form, a command or the API: domains (a string of names, or a list),
    CA profile, key type, auto-renew, ACME profile, tags, and the fallback profiles (fallback_1..
    or `fallbacks`; none: the profile's default list). Every rule a new certificate obeys is
    here (the API's schema only checks the JSON types), so each caller refuses the same input
    with the same words."""
    errors: dict[str, str] = {}
    try:
        tag_list = tags.parse(values.get("tags"))
    except ValidationError as exc:
        errors.update(exc.errors)
        tag_list = []
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
        given = values.get("domains", "")
        if not isinstance(given, str):
            given = " ".join(str(name) for name in given)
        names, problems = domains.parse(given, allow_wildcard=profile.allow_wildcard,
                                        max_names=plugin.max_names if plugin else 100)
        if problems:
            errors["domains"] = " ".join(problems)
        if not profile.dns_zone or not profile.email:
            errors["profile_id"] = (f"The CA profile {profile.name} is not complete: fill in its email "
                                    "and DNS Zone, then Save and Test.")
        elif profile.last_test_ok is False:
            errors["profile_id"] = (f"The CA profile {profile.name} fails its test "
                                    f"({profile.last_test_message}); fix it and Save and Test first.")
        validation = persist.mode(values.get("validation"))
        if validation is None:
            errors["validation"] = "Choose the validation: cname or dns-persist-01 (persist)."
        elif validation == persist.PERSIST:
            offered, why = persist.offer(profile)
            if not offered:
                errors["validation"] = f"dns-persist-01 is not available: {why}"
        acme_profile = (values.get("acme_profile") or "").strip()
        offered = (profile.directory_meta or {}).get("profiles") or {}
        if acme_profile and acme_profile not in offered:
            errors["acme_profile"] = (f"The CA offers no profile {acme_profile!r}"
                                      + (f"; choose one of {', '.join(offered)}." if offered else "."))
    fallback_ids: list[int] = []
    try:
        fallback_ids = failover.parse(values, profile.id if profile else None) or []
    except ValidationError as exc:
        errors.update(exc.errors)
    if errors:
        raise ValidationError(errors)
    cert = Certificate(profile_id=profile.id, domains=names, common_name=names[0],
                       search_text=" ".join(names + [domains.to_unicode(n) for n in names]).lower(),
                       status=Status.DRAFT, key_type=key_type,
                       auto_renew=_truthy(values.get("auto_renew", "1")),
                       acme_profile=(values.get("acme_profile") or "").strip(),
                       reuse_key=_truthy(values.get("reuse_key")), validation=validation)
    db.session().add(cert)
    db.session().flush()
    if validation == persist.CNAME:
        zones = dict.fromkeys([profile.dns_zone] + [ca_profiles.get(i).dns_zone for i in fallback_ids])
        for base in domains.challenge_bases(names):
            for zone in zones:
                domains.label_for(base, zone)  # fixed now: the instructions never change
    if fallback_ids:
        failover.set_certificate_fallbacks(cert, fallback_ids)
    audit.record("certificate created", "certificate", cert.id, ", ".join(names))
    if tag_list:
        tags.replace(cert, tag_list, commit=False)
    db.session().commit()
    return cert


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "on", "yes", "y"}


def generate_csr(cert: Certificate) -> Certificate:
    """A new private key (encrypted at rest) and CSR: Draft → CSR."""
    if cert.status not in (Status.DRAFT, Status.CSR, Status.FAILED):
        raise Conflict(f"The certificate is {cert.status}; a CSR is made for a draft.")
    if not (cert.reuse_key and cert.private_key):
        cert.private_key = generate_private_key(cert.key_type)
    cert.csr = make_csr(cert.private_key, cert.domains)
    cert.status = Status.CSR
    Timeline(cert)(f"csr: new {KEY_TYPES[cert.key_type]} key and CSR for {', '.join(cert.domains)}")
    db.session().commit()
    return cert


def request(cert: Certificate) -> Certificate:
    """CSR → Pending (CNAME): the scheduler takes it from here once the CNAMEs resolve. From
    Failed this is Retry: a new key (unless Reuse key) and CSR, then Pending again."""
    retry = cert.status == Status.FAILED
    if cert.status in (Status.DRAFT, Status.FAILED):
        generate_csr(cert)
    if cert.status != Status.CSR:
        raise Conflict(f"The certificate is {cert.status}; only a certificate with a CSR can be requested.")
    cert.status, cert.next_run_at, cert.attempts = Status.PENDING, utcnow(), 0
    cert.pending_since = cert.next_run_at
    cert.last_error = cert.last_error_hint = ""
    cert.failing_since = None
    Timeline(cert)("pending: waiting for the _validation-persist records"
                   if cert.validation == persist.PERSIST else
                   "pending: waiting for the _acme-challenge CNAMEs")
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


def instructions(cert: Certificate, zone: str = "") -> list[CnameInstruction]:
    """The one CNAME per base domain the domain owner must create (into `zone`: a fallback's;
    none for dns-persist-01: persist_instructions has its records)."""
    if cert.validation == persist.PERSIST:
        return []
    zone = zone or ca_profiles.get(cert.profile_id).dns_zone
    out = []
    for base in domains.challenge_bases(cert.domains):
        target = domains.cname_target(base, zone)
        out.append(CnameInstruction(base, domains.to_unicode(base), f"_acme-challenge.{base}", target,
                                    f"_acme-challenge.{base}. IN CNAME {target}."))
    return out


# -- processing --------------------------------------------------------------------------------


# -- listing and detail ------------------------------------------------------------------------

# A search matching up to this many (1 % of 100,000) is counted and paged from its ids (see
# search()); with more, matches are dense enough that walking the newest first finds a page soon.
FEW_MATCHES = 1000


def search(query: str = "", status: str = "", page: int = 1, per_page: int = 50, *, tag: str = "",
           profile_id: int | None = None, where=None):
    """One page of certificates (newest first) and the total, searched on the server; `tag`,
    `profile_id` and `where` (a permission's restriction) narrow it."""
    count = select(func.count()).select_from(Certificate)
    conditions = []
    if tag:
        count = tags.with_tag(count, tag)
    if profile_id is not None:
        conditions.append(Certificate.profile_id == profile_id)
    if where is not None:
        conditions.append(where)
    if query:
        conditions.append(Certificate.search_text.like(f"%{query.strip().lower()}%"))
    if status in STATUSES:
        conditions.append(Certificate.status == status)
    count = count.where(*conditions)
    matching = count.with_only_columns(Certificate.id)
    offset = (max(page, 1) - 1) * per_page
    # A search first asks for up to FEW_MATCHES + 1 matching ids, in any order: few matches are
    # then all there, counted and paged here from one pass (through pg_trgm's index on
    # PostgreSQL; SQLite reads the table once instead of twice). Asked for "newest first, LIMIT
    # 50" the planner would walk the primary key backwards testing each row, and when the
    # matches are old ones that reads most of the table. Many matches stop that first pass
    # early, and walking the newest first then finds a page soon.
    found = db.session().scalars(matching.limit(FEW_MATCHES + 1)).all() if query else None
    if found is not None and len(found) <= FEW_MATCHES:
        total = len(found)
        page_ids = Certificate.id.in_(sorted(found, reverse=True)[offset:offset + per_page])
    else:
        total = db.session().scalar(count)
        # The page's ids first, from the primary key alone; then only those rows. A deep page
        # (OFFSET 50,000) otherwise fetches every row it skips.
        page_ids = Certificate.id.in_(matching.order_by(Certificate.id.desc()).offset(offset).limit(per_page))
    # Lists never load (and so never decrypt) keys: secrets stay out of list requests.
    rows = db.session().execute(
        select(Certificate).options(defer(Certificate.private_key), defer(Certificate.account_key),
                                    defer(Certificate.csr))
        .where(page_ids).order_by(Certificate.id.desc())).scalars().all()
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


def export_pkcs12(cert: Certificate, password: str, *, legacy: bool = False,
                  version: CertificateVersion | None = None) -> bytes:
    """The current (or given) version as PKCS#12: AES-256, or 3DES/SHA-1 for older systems (legacy)."""
    if len(password) < 8:
        raise ValidationError({"password": "Use a PKCS#12 password of at least 8 characters."})
    files = export_files(cert, version)
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
    if cert.status != Status.ACTIVE or version is None:
        raise Conflict(f"Only an Active certificate can be revoked; this one is {cert.status}.")
    profile = failover.issuing_profile(cert, version)  # the CA that issued this version
    timeline_ = Timeline(cert)
    own = cert.account_url and profile.id == cert.profile_id  # ZeroSSL without keys: its own account
    key, url = (cert.account_key, cert.account_url) if own else (profile.account_key, profile.account_url)
    client = ca_profiles.acme_client(profile, account_key=key, account_url=url, log=timeline_)
    try:
        client.revoke(version.cert_pem, reason)
    finally:
        client.close()
    version.revoked_at = utcnow()
    cert.status = Status.REVOKED
    audit.record("certificate revoked", "certificate", cert.id,
                 f"{', '.join(cert.domains)}: {REVOCATION_REASONS[reason]}")
    db.session().commit()


def delete(cert: Certificate, confirm: str = "") -> None:
    """Delete; an Active certificate only with its first name typed as confirmation."""
    if cert.status == Status.ACTIVE and confirm.strip().lower() != cert.common_name:
        raise ValidationError({"confirm": f"This certificate is Active: type {cert.common_name} to delete it."})
    dns_manager.remove_customer_cnames(cert)  # only the CNAMEs SSL Manager itself made
    audit.record("certificate deleted", "certificate", cert.id, ", ".join(cert.domains))
    db.session().execute(TimelineEvent.__table__.delete().where(TimelineEvent.certificate_id == cert.id))
    db.session().execute(CertificateVersion.__table__.delete().where(CertificateVersion.certificate_id == cert.id))
    tags.delete_for(cert.id)
    failover.forget_certificate(cert.id)
    db.session().delete(cert)
    db.session().commit()


def reissue_under(cert: Certificate, profile_id: int) -> Certificate:
    """Migration: a new certificate with the same names under another profile; the old one
    stays until the new one is Active (then delete or revoke it yourself)."""
    profile = ca_profiles.get(profile_id)
    new = create({"profile_id": profile.id, "domains": " ".join(cert.domains), "key_type": cert.key_type,
                  "auto_renew": "1" if cert.auto_renew else "", "acme_profile": "",
                  "tags": tags.of(cert.id)})
    if profile.id == cert.profile_id:  # after a revocation or expiry: the same CA again
        audit.record("certificate issued again", "certificate", new.id,
                     f"from certificate {cert.id} ({cert.status}) under profile {profile.name}")
    else:
        audit.record("certificate reissued under another CA", "certificate", new.id,
                     f"from certificate {cert.id} to profile {profile.name}")
    db.session().commit()
    return new


def set_fallbacks(cert: Certificate, values: dict[str, Any]) -> list[CAProfile]:
    """Change the certificate's own fallback list (empty: its profile's default applies)."""
    ids = failover.parse(values, cert.profile_id) or []
    for base in domains.challenge_bases(cert.domains):
        for fallback_id in ids:
            domains.label_for(base, ca_profiles.get(fallback_id).dns_zone)
    failover.set_certificate_fallbacks(cert, ids)
    db.session().commit()
    return failover.fallbacks(cert)


def fallback_instructions(cert: Certificate) -> list[tuple[CAProfile, list[CnameInstruction]]]:
    """For each fallback on another technical zone: the CNAMEs failing over to it would need
    (a name has one CNAME: the domain owner would have to switch it)."""
    primary = ca_profiles.get(cert.profile_id)
    return [(p, instructions(cert, p.dns_zone)) for p in failover.fallbacks(cert)
            if failover.other_zone(primary, p)]


def persist_instructions(cert: Certificate) -> list:
    """The one `_validation-persist` TXT record per base domain (dns-persist-01 only)."""
    return persist.instructions(cert) if cert.validation == persist.PERSIST else []


def create_customer_cnames(cert: Certificate) -> list:
    """Opt-in: make the _acme-challenge CNAMEs in customer zones SSL Manager manages."""
    results = dns_manager.ensure_customer_cname(cert)
    for r in results:
        Timeline(cert)(f"customer CNAME {r.name}: {r.status} ({r.message})")
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
