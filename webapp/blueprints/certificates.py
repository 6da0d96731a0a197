"""Settings → SSL Manager → Certificates: thin views over services.certificates. The page's
secondary forms (tags, fallbacks, downloads, deploy settings) are in certificate_extras.py, on
this same blueprint."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from werkzeug.exceptions import NotFound as HTTPNotFound

from ..crypto import KEY_TYPES, cert_info
from ..errors import NotFound, SSLManagerError, ValidationError
from ..models import utcnow
from ..services import agents, ca_profiles, certificates as service, delegation, domains, failover, lifetimes, persist, pipeline, tags
from ..services.inputs import page_number
from .common import htmx
from .flashes import flash

bp = Blueprint("certificates", __name__, url_prefix="/certificates")

T = "sslmanager/certificates/"
STATUS_LABELS = {"draft": "Draft", "csr": "CSR", "pending": "Pending (CNAME)",
                 "processing": "Processing", "active": "Active", "failed": "Failed",
                 "expired": "Expired", "revoked": "Revoked"}
STEPS = ("draft", "csr", "pending", "processing", "active")  # the progress indicator
POLLING = ("pending", "processing")  # statuses that change by themselves
DONE = ("revoked", "expired")  # no longer valid: nothing to renew, deploy or revoke
CHECK_LABELS = {"ok": "OK", "missing": "Missing", "nxdomain": "NXDOMAIN", "elsewhere": "Points elsewhere",
                "chain": "CNAME chain", "wildcard": "Wildcard record", "error": "DNS error",
                # dns-persist-01 records
                "warning": "OK, expiring soon", "malformed": "Malformed", "issuer": "Wrong issuer domain",
                "accounturi": "Wrong account", "policy": "No policy=wildcard", "expired": "Expired"}
DOWNLOADS = ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")


def status_label(status: str, validation: str = "") -> str:
    """A status in words; dns-persist-01 waits for its _validation-persist record, not a CNAME."""
    if status == "pending" and validation == persist.PERSIST:
        return "Pending (record)"
    return STATUS_LABELS.get(status, status)


@bp.context_processor
def _helpers():
    return {"status_labels": STATUS_LABELS, "status_label": status_label, "steps": STEPS, "polling_statuses": POLLING, "done_statuses": DONE,
            "key_types": KEY_TYPES, "to_unicode": domains.to_unicode,
            "days_remaining": service.days_remaining, "check_labels": CHECK_LABELS,
            "expiry_level": lambda c: lifetimes.level(c.not_before, c.not_after, utcnow()),
            "time_left": lambda c: lifetimes.remaining(c.not_after, utcnow()),
            "validation_modes": persist.MODES}


@bp.errorhandler(SSLManagerError)
def _refused(exc: SSLManagerError):
    """Whatever a view did not handle itself: a flash with the hint, never a stack trace."""
    if isinstance(exc, NotFound):
        return HTTPNotFound(exc.message)
    _flash_error(exc)
    cert_id = (request.view_args or {}).get("cert_id")
    if cert_id is None or request.endpoint == "sslmanager.certificates.detail":  # never a redirect loop
        target = url_for(".index")
    else:
        target = url_for(".detail", cert_id=cert_id)
    if htmx:
        return "", 204, {"HX-Redirect": target}
    return redirect(target)


def _flash_error(exc: SSLManagerError, prefix: str = "") -> None:
    text = " ".join(exc.errors.values()) if isinstance(exc, ValidationError) else str(exc)
    flash(f"{prefix}{text}" + (f" {exc.hint}" if exc.hint else ""), "error")


def cert_or_404(cert_id: int):
    try:
        return service.get(cert_id)
    except NotFound:
        abort(404)


def _names(cert) -> str:
    return ", ".join(domains.to_unicode(n) for n in cert.domains)


# -- list --------------------------------------------------------------------------------------

@bp.route("/")
def index():
    q = request.args.get("q", "").strip()
    status = request.args.get("status", "")
    status = status if status in service.STATUSES else ""
    tag = request.args.get("tag", "").strip().lower()
    tag = tag if tags.TAG.fullmatch(tag) else ""
    per_page = current_app.config["SSLMANAGER_PAGE_SIZE"]
    page = page_number(request.args.get("page"))
    certs, total = service.search(q, status, page, per_page, tag=tag)
    pages = max(1, -(-total // per_page))
    if page > pages:  # a stale link past the end: show the last page
        page = pages
        certs, total = service.search(q, status, page, per_page, tag=tag)
    context = {"certs": certs, "total": total, "q": q, "status": status, "page": page, "tag": tag,
               "all_tags": tags.all_tags(),
               "pages": pages, "per_page": per_page, "statuses": service.STATUSES,
               "per_ca": current_app.config["SSLMANAGER_CONCURRENCY_PER_CA"],
               # One query for the page's profile names: never one per row.
               "profile_names": service.profile_names({c.profile_id for c in certs})}
    if htmx and htmx.target == "cert-rows" and not htmx.history_restore_request:
        return render_template(T + "_rows.html", oob=True, **context)
    return render_template(T + "index.html", **context)


@bp.route("/<int:cert_id>/row")
def row(cert_id: int):
    """One list row: Pending and Processing rows poll this until they are final."""
    cert = cert_or_404(cert_id)
    return render_template(T + "_row.html", c=cert, profile_names=service.profile_names({cert.profile_id}))


# -- create ------------------------------------------------------------------------------------

def _offered(profile) -> dict[str, str]:
    """The ACME profiles the CA announced in its directory (name -> description)."""
    offered = ((profile.directory_meta or {}).get("profiles") or {}) if profile is not None else {}
    if isinstance(offered, dict):
        return {str(k): str(v) for k, v in offered.items()}
    return {str(name): "" for name in offered}


@bp.route("/new", methods=["GET", "POST"])
def new():
    profiles = service.profiles_for_select()
    values: dict = {"key_type": "ec-p256", "auto_renew": True}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values = request.form.to_dict()
        values["auto_renew"] = "auto_renew" in request.form  # an unticked box sends nothing
        try:
            cert = service.create({**values, "auto_renew": "1" if values["auto_renew"] else ""})
        except ValidationError as exc:
            errors = exc.errors
        else:
            flag_other_zones(cert)
            if values.get("create_cnames") and cert.validation == persist.CNAME:
                for result in service.create_customer_cnames(cert):
                    flash(f"{result.name}: {result.message}", "info" if result.status in ("created", "present") else "error")
            if values.get("action") == "request":
                _request(cert, created=True)
            else:
                flash(f"Draft saved for {_names(cert)}. Generate the CSR or request it when ready.", "info")
            return redirect(url_for(".detail", cert_id=cert.id))
    chosen = ca_profiles.preselected(profiles, values.get("profile_id"))
    persist_offered, persist_why = persist.offer(chosen)
    return render_template(T + "new.html", profiles=profiles, chosen=chosen, offered=_offered(chosen),
                           persist_offered=persist_offered, persist_why=persist_why,
                           values=values, errors=errors,
                           fallback_selected=[values.get(f"fallback_{i}", "") for i in (1, 2, 3)]
                           ), 422 if errors else 200


def flag_other_zones(cert) -> None:
    """No surprise at failover: say which fallbacks would need other CNAMEs."""
    for profile, records in service.fallback_instructions(cert):
        flash(f"Fallback {profile.name} uses the technical zone {profile.dns_zone}: failing over to it "
              f"needs {', '.join(r.name for r in records)} to point into that zone instead. Preflight "
              "checks them.", "error")


@bp.route("/acme-profiles")
def acme_profiles():
    """The ACME profile field for the chosen CA profile (swapped in when the profile changes),
    and out of band the validation field (is dns-persist-01 offered by that CA?)."""
    try:
        profile = ca_profiles.get(request.args.get("profile_id", 0, type=int))
    except NotFound:
        profile = None
    persist_offered, persist_why = persist.offer(profile)
    return (render_template(T + "_acme_profiles.html", offered=_offered(profile), values={}, errors={})
            + render_template(T + "_validation.html", persist_offered=persist_offered,
                              persist_why=persist_why, values={}, errors={}, oob=True))


def _request(cert, created: bool = False) -> None:
    """Request the certificate (CSR → Pending) and say what happens next."""
    try:
        service.request(cert)
    except SSLManagerError as exc:
        _flash_error(exc, "Saved as a draft, but the request failed: " if created else "")
        return
    if cert.validation == persist.PERSIST:
        flash(f"Requested {_names(cert)}: create the _validation-persist TXT record"
              f"{'s' if len(service.persist_instructions(cert)) != 1 else ''} below; issuance starts "
              "by itself once the domain's name servers serve them.", "info")
        return
    flash(f"Requested {_names(cert)}: create the CNAME record{'s' if len(service.instructions(cert)) != 1 else ''} "
          "below; issuance starts by itself once they resolve.", "info")


# -- detail ------------------------------------------------------------------------------------

def _chain_subjects(chain_pem: str) -> list[str]:
    marker = "-----END CERTIFICATE-----"
    return [cert_info(part + marker).subject for part in chain_pem.split(marker) if "BEGIN CERTIFICATE" in part]


def detail_page(cert, errors: dict[str, str] | None = None, code: int = 200, template: str = "detail.html"):
    version = service.current_version(cert)
    # A revoked or expired certificate may be issued again under its own profile too.
    done = cert.status in DONE
    reissue_profiles = [p for p in service.profiles_for_select() if done or p.id != cert.profile_id]
    return render_template(
        T + template, cert=cert, profile=ca_profiles.get(cert.profile_id), version=version,
        info=cert_info(version.cert_pem) if version else None,
        chain=_chain_subjects(version.chain_pem) if version else [],
        versions=service.versions(cert), events=service.timeline(cert), shown=cert.status,
        instructions=service.instructions(cert) if cert.status == "pending" else [],
        persist_records=service.persist_instructions(cert) if cert.status == "pending" else [],
        issuer_source=persist.issuer_source(ca_profiles.get(cert.profile_id)),
        reissue_profiles=reissue_profiles, done=done,
        reissue_chosen=ca_profiles.preselected(reissue_profiles, request.form.get("profile_id")),
        reasons=service.REVOCATION_REASONS, downloads=DOWNLOADS, errors=errors or {}, cert_tags=tags.of(cert.id),
        fallbacks=failover.fallbacks(cert), own_fallbacks=failover.own_fallbacks(cert),
        fallback_selected=([request.form.get(f"fallback_{i}", "") for i in (1, 2, 3)]
                           if "fallback_1" in request.form else [p.id for p in failover.own_fallbacks(cert)]),
        all_profiles=service.profiles_for_select(), attempt_profile=failover.attempt_profile(cert),
        profile_names=service.profile_names(), other_zone=failover.other_zone,
        agents=agents.for_certificate(cert), silent_after=agents.silent_after(),
        form=request.form if request.method == "POST" else {}), code


@bp.route("/<int:cert_id>")
def detail(cert_id: int):
    return detail_page(cert_or_404(cert_id))


@bp.route("/<int:cert_id>/status")
def status(cert_id: int):
    """The self-replacing status block: polls while Pending/Processing, stops when final."""
    cert = cert_or_404(cert_id)
    shown = request.args.get("shown", cert.status)
    if htmx and shown != cert.status:
        # The page around the block (instructions, downloads) belongs to the old status: the
        # whole page under the title is swapped in place, no reload (scroll and focus stay).
        body, code = detail_page(cert, template="_detail_body.html")
        return body, code, {"HX-Retarget": "#cert-page", "HX-Reswap": "outerHTML"}
    return render_template(T + "_status.html", cert=cert, shown=shown, events=service.timeline(cert))


@bp.route("/<int:cert_id>/cnames")
def cname_checks(cert_id: int):
    """The live check of each _acme-challenge CNAME (loaded after the page: it asks DNS)."""
    cert = cert_or_404(cert_id)
    checks, problem, started = [], "", False
    if cert.status == "pending":
        try:
            checks = delegation.validation_report(cert)
        except SSLManagerError as exc:
            problem = str(exc)
        # Every CNAME in place: start now, as Check now does, rather than leave the page saying
        # "waiting" until the scheduler's next look (the status block then follows in place).
        if checks and all(c.ok for c in checks) and pipeline.check_cnames(cert):
            pipeline.process_in_background(cert.id)
            started = True
    return render_template(T + "_cname_checks.html", cert=cert, checks=checks, problem=problem,
                           started=started)


@bp.route("/<int:cert_id>/instructions")
def instructions(cert_id: int):
    """A printable page for the domain owner: the records and what to do, no navigation."""
    cert = cert_or_404(cert_id)
    return render_template(T + "instructions.html", cert=cert, instructions=service.instructions(cert),
                           persist_records=service.persist_instructions(cert))


# -- actions -----------------------------------------------------------------------------------

@bp.route("/<int:cert_id>/check", methods=["POST"])
def check(cert_id: int):
    """Check now: the CNAMEs, and when they all resolve, start issuing in the background."""
    cert = cert_or_404(cert_id)
    if cert.status != "pending":
        flash(f"Nothing to check: the certificate is {STATUS_LABELS[cert.status]}.", "info")
    elif pipeline.check_cnames(cert):
        pipeline.process_in_background(cert.id)
        flash(("Every _validation-persist record authorizes this account" if cert.validation == persist.PERSIST
               else "Every CNAME resolves into the technical zone") + ": the certificate is being issued now.", "info")
    else:
        flash(f"Not yet: {cert.last_error} {cert.last_error_hint}".strip(), "error")
    return redirect(url_for(".detail", cert_id=cert_id))


@bp.route("/<int:cert_id>/renew", methods=["POST"])
def renew(cert_id: int):
    """Renew now: a new version in the background, within the per-CA bound."""
    cert = cert_or_404(cert_id)
    _flash_renewals(pipeline.renew_now([cert.id], reason="requested on its page"))
    return redirect(url_for(".detail", cert_id=cert_id))


@bp.route("/renew", methods=["POST"])
def renew_selected():
    """The list's bulk action: renew the ticked certificates now, a few at a time per CA."""
    ids = [int(v) for v in request.form.getlist("ids") if v.isascii() and v.isdigit() and len(v) < 19]
    if not ids:
        flash("Tick the Active certificates to renew, then Renew now.", "error")
    else:
        _flash_renewals(pipeline.renew_now(ids, reason="requested from the list"))
    return redirect(request.form.get("next") if _local(request.form.get("next")) else url_for(".index"))


def _local(target: str | None) -> bool:
    return bool(target) and target.startswith("/") and not target.startswith("//")


def _flash_renewals(results: dict[int, str]) -> None:
    started = [i for i, status in results.items() if status == "started"]
    per_ca = current_app.config["SSLMANAGER_CONCURRENCY_PER_CA"]
    if started:
        flash(f"Renewing {len(started)} certificate{'s' if len(started) != 1 else ''} now "
              f"(at most {per_ca} at a time per CA): each gets a new version; the current one "
              "keeps serving until then.", "info")
    others = {i: status for i, status in results.items() if status != "started"}
    if others:
        why = {"busy": "another process is working on it", "missing": "no such certificate"}
        flash("Not renewed: " + "; ".join(
            f"#{i}: {why.get(status, 'it is ' + STATUS_LABELS.get(status, status) + ', only Active ones renew')}"
            for i, status in others.items()) + ".", "error")


@bp.route("/<int:cert_id>/csr", methods=["POST"])
def csr(cert_id: int):
    cert = service.generate_csr(cert_or_404(cert_id))
    flash(f"A new {KEY_TYPES[cert.key_type]} key and CSR were made. Request the certificate when ready.", "info")
    return redirect(url_for(".detail", cert_id=cert_id))


@bp.route("/<int:cert_id>/request", methods=["POST"], endpoint="request")
def request_certificate(cert_id: int):
    """Request (from Draft or CSR) or Retry (from Failed)."""
    _request(cert_or_404(cert_id))
    return redirect(url_for(".detail", cert_id=cert_id))


@bp.route("/<int:cert_id>/revoke", methods=["POST"])
def revoke(cert_id: int):
    cert = cert_or_404(cert_id)
    reason = request.form.get("reason", -1, type=int)
    try:
        service.revoke(cert, reason)
    except ValidationError as exc:
        return detail_page(cert, exc.errors, 422)
    flash(f"Revoked at the CA ({service.REVOCATION_REASONS[reason]}): {_names(cert)}.", "info")
    return redirect(url_for(".detail", cert_id=cert_id))


@bp.route("/<int:cert_id>/delete", methods=["POST"])
def delete(cert_id: int):
    cert = cert_or_404(cert_id)
    names, was_active = _names(cert), cert.status == "active"
    try:
        service.delete(cert, request.form.get("confirm", ""))
    except ValidationError as exc:
        return detail_page(cert, exc.errors, 422)
    flash(f"Certificate for {names} deleted."
          + (" It was not revoked: it stays valid at the CA until it expires." if was_active else ""), "info")
    return redirect(url_for(".index"))


@bp.route("/<int:cert_id>/reissue", methods=["POST"])
def reissue(cert_id: int):
    """Migration to another CA profile: a new certificate for the same names, requested now."""
    cert = cert_or_404(cert_id)
    profile_id = request.form.get("profile_id", 0, type=int)
    if profile_id == cert.profile_id and cert.status not in DONE:
        return detail_page(cert, {"reissue_profile_id": "Choose another CA profile than the current one."}, 422)
    try:
        new_cert = service.reissue_under(cert, profile_id)
    except NotFound:
        return detail_page(cert, {"reissue_profile_id": "Choose a CA profile."}, 422)
    except ValidationError as exc:
        return detail_page(cert, {"reissue_profile_id": " ".join(exc.errors.values())}, 422)
    profile = ca_profiles.get(new_cert.profile_id)
    if cert.status in DONE:
        flash(f"New certificate #{new_cert.id} for the same names under {profile.name} (#{cert.id} is "
              f"{STATUS_LABELS[cert.status]} and stays as a record).", "info")
    else:
        flash(f"New certificate #{new_cert.id} for the same names under {profile.name}. The old certificate "
              f"(#{cert.id}) stays until the new one is Active; then deploy the new one and delete or revoke the old.",
              "info")
    _request(new_cert)
    return redirect(url_for(".detail", cert_id=new_cert.id))
