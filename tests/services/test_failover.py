"""CA failover's rules, through the pipeline's failure handling: when a certificate fails over
(rate limited past the deadline, serverInternal N times, account refused, unreachable longer
than the setting, a first issuance out of attempts), when it does not (far from expiry, a short
rate limit), the fallback lists, and the preflight of fallbacks against the lab's real DNS."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.lab.servers import TECH_ZONE
from webapp import db
from webapp.errors import AcmeError, AcmeNetworkError, AcmeRateLimited, Conflict, ValidationError
from webapp.models import AuditEvent, CertificateVersion, utcnow
from webapp.services import ca_profiles, certificates, delegation, domains, failover, pipeline, zones

URN = "urn:ietf:params:acme:error:"


def make_profile(name: str, zone: str = TECH_ZONE, identities: tuple[str, ...] = ()):
    """A complete profile without a CA behind it: these tests decide, never order."""
    profile = ca_profiles.create({"name": name, "module": "custom"})
    ca_profiles.update(profile, {"name": name, "directory_url": "https://127.0.0.1:9/dir",
                                 "email": "ops@example.com", "dns_zone": zone, "allow_wildcard": "1",
                                 "dns_ttl": "30", "api_timeout": "5"})
    profile.directory_meta = {"caaIdentities": list(identities)}
    db.session().commit()
    return profile


@pytest.fixture
def ctx(app):
    app.config.update(SSLMANAGER_FAILOVER_UNREACHABLE=600, SSLMANAGER_FAILOVER_SERVER_ERRORS=3)
    with app.app_context():
        for name in ("A", "B", "C"):
            make_profile(name)
        yield app


def renewing(fallbacks=("B",), *, left_days: float = 20, lifetime_days: float = 90,
             domains_text: str = "shop.example"):
    """A certificate of A renewing now, its current version with `left_days` of its lifetime left."""
    primary = ca_profiles.by_name("A")
    cert = certificates.create({"profile_id": primary.id, "domains": domains_text,
                                "fallbacks": list(fallbacks)})
    not_after = utcnow() + timedelta(days=left_days)
    db.session().add(CertificateVersion(
        certificate_id=cert.id, number=1, cert_pem="PEM", chain_pem="", private_key="KEY", serial="01",
        not_before=not_after - timedelta(days=lifetime_days), not_after=not_after, profile_id=primary.id))
    cert.status, cert.serial, cert.not_after, cert.private_key = "processing", "01", not_after, "KEY"
    db.session().commit()
    return cert


def fail(cert, exc):
    """One failed attempt, as the pipeline handles it; the certificate as it ends."""
    cert.status = "processing"
    db.session().commit()
    pipeline.handle_failure(cert, exc)
    return certificates.get(cert.id)


def server_internal():
    return AcmeError("the CA had an internal error", step="finalize", status=500,
                     problem_type=URN + "serverInternal")


def lines(cert) -> list[str]:
    return [e.message for e in certificates.timeline(cert)]


def test_server_internal_n_times_in_a_row_fails_over_to_the_first_fallback(ctx):
    cert = renewing()
    for _ in range(2):
        cert = fail(cert, server_internal())
        assert cert.attempt_profile_id is None and cert.status == "active"
    cert = fail(cert, server_internal())
    assert cert.attempt_profile_id == ca_profiles.by_name("B").id
    assert "serverInternal 3 times in a row" in cert.failover_reason
    assert cert.status == "active" and cert.next_run_at <= utcnow()  # the fallback's turn at once
    assert any(line.startswith("failover: A answered serverInternal") for line in lines(cert))
    assert db.session().execute(select(AuditEvent).filter_by(action="certificate failed over")).scalar_one()


def test_another_answer_breaks_the_run_of_server_errors(ctx):
    cert = renewing()
    for exc in (server_internal(), server_internal(),
                AcmeError("bad CSR", step="finalize", status=400, problem_type=URN + "badCSR"),
                server_internal(), server_internal()):
        cert = fail(cert, exc)
    assert cert.attempt_profile_id is None and ca_profiles.by_name("A").server_errors == 2


def test_rate_limited_past_the_renewal_deadline_fails_over(ctx):
    cert = renewing()  # 20 of 90 days left: the deadline is 15 days before expiry
    cert = fail(cert, AcmeRateLimited("too many certificates", step="new order", status=429,
                                      problem_type=URN + "rateLimited", retry_after=10 * 86400))
    assert cert.attempt_profile_id == ca_profiles.by_name("B").id and "rate limited until" in cert.failover_reason


def test_a_rate_limit_ending_before_the_deadline_waits_for_the_primary(ctx):
    cert = renewing()
    cert = fail(cert, AcmeRateLimited("slow down", step="new order", status=429,
                                      problem_type=URN + "rateLimited", retry_after=3600))
    assert cert.attempt_profile_id is None and cert.next_run_at > utcnow() + timedelta(minutes=55)


def test_an_account_the_ca_refuses_fails_over(ctx):
    cert = renewing()
    cert = fail(cert, AcmeError("the CA rejected the External Account Binding", step="new account",
                                status=403, problem_type=URN + "unauthorized"))
    assert cert.attempt_profile_id == ca_profiles.by_name("B").id
    assert "refused the ACME account" in cert.failover_reason


def test_far_from_expiry_the_primary_keeps_its_certificate(ctx):
    cert = renewing(left_days=80)  # the margin (a third of 90 days) is not reached
    cert = fail(cert, AcmeError("refused", step="new account", status=403, problem_type=URN + "unauthorized"))
    assert cert.attempt_profile_id is None and cert.failover_reason == ""
    assert not any(line.startswith("failover") for line in lines(cert))


def test_unreachable_fails_over_only_after_the_setting_and_retries_in_time(ctx):
    cert = renewing()
    cert = fail(cert, AcmeNetworkError("connection refused", step="fetch directory"))
    assert cert.attempt_profile_id is None
    assert cert.next_run_at <= utcnow() + timedelta(seconds=600)  # not the backoff's hours later
    primary = ca_profiles.by_name("A")
    primary.unreachable_since = primary.unreachable_seen_at = utcnow() - timedelta(minutes=11)
    db.session().commit()
    cert = fail(cert, AcmeNetworkError("connection refused", step="fetch directory"))
    assert cert.attempt_profile_id == ca_profiles.by_name("B").id and "unreachable since" in cert.failover_reason


def test_a_fallback_that_cannot_issue_either_is_skipped(ctx):
    b = ca_profiles.by_name("B")
    b.account_refused = "new account: refused"
    db.session().commit()
    cert = renewing(fallbacks=("B", "C"))
    cert = fail(cert, AcmeError("refused", step="new order", status=403, problem_type=URN + "unauthorized"))
    assert cert.attempt_profile_id == ca_profiles.by_name("C").id


def test_the_last_fallback_failing_goes_back_to_the_primary_with_backoff(ctx):
    cert = renewing()
    cert = fail(cert, AcmeError("refused", step="new order", status=403, problem_type=URN + "unauthorized"))
    assert cert.attempt_profile_id == ca_profiles.by_name("B").id
    cert = fail(cert, AcmeError("refused", step="new order", status=403, problem_type=URN + "unauthorized"))
    assert cert.attempt_profile_id is None and cert.next_run_at > utcnow()
    assert "no fallback can issue either" in lines(cert)[-2]


def test_a_first_issuance_fails_over_when_its_attempts_run_out(ctx):
    ctx.config["SSLMANAGER_MAX_ATTEMPTS"] = 2
    ctx.config["SSLMANAGER_FAILOVER_UNREACHABLE"] = 86400  # never "down long enough" here
    cert = certificates.create({"profile_id": ca_profiles.by_name("A").id, "domains": "new.example",
                                "fallbacks": ["B"]})
    cert = fail(cert, AcmeNetworkError("timed out", step="fetch directory"))
    assert cert.status == "processing" and cert.attempt_profile_id is None
    cert = fail(cert, AcmeNetworkError("timed out", step="fetch directory"))
    assert cert.status == "processing" and cert.attempt_profile_id == ca_profiles.by_name("B").id
    assert cert.attempts == 0 and "failed 2 attempts in a row" in cert.failover_reason


def test_without_fallbacks_nothing_fails_over(ctx):
    cert = renewing(fallbacks=())
    cert = fail(cert, AcmeError("refused", step="new order", status=403, problem_type=URN + "unauthorized"))
    assert cert.attempt_profile_id is None and cert.status == "active"


# -- the lists -----------------------------------------------------------------------------------

def test_the_profiles_default_list_applies_until_the_certificate_has_its_own(ctx):
    a = ca_profiles.by_name("A")
    ca_profiles.update(a, {**_fields(a), "fallback_1": str(ca_profiles.by_name("C").id), "fallback_2": ""})
    cert = renewing(fallbacks=())
    assert [p.name for p in failover.fallbacks(cert)] == ["C"]
    certificates.set_fallbacks(cert, {"fallbacks": ["B", "C"]})
    assert [p.name for p in failover.fallbacks(cert)] == ["B", "C"]
    certificates.set_fallbacks(cert, {"fallbacks": []})
    assert [p.name for p in failover.fallbacks(cert)] == ["C"]


def _fields(profile) -> dict:
    return {"name": profile.name, "directory_url": profile.directory_url, "email": profile.email,
            "dns_zone": profile.dns_zone, "dns_ttl": "30", "api_timeout": "5"}


@pytest.mark.parametrize("given, words", [(["A"], "is the primary"), (["B", "B"], "listed twice"),
                                          (["Nope"], "No CA profile 'Nope'")])
def test_a_wrong_fallback_list_is_refused_naming_the_field(ctx, given, words):
    with pytest.raises(ValidationError) as caught:
        certificates.create({"profile_id": ca_profiles.by_name("A").id, "domains": "x.example",
                             "fallbacks": given})
    assert words in caught.value.errors["fallback"]


def test_a_profile_in_a_fallback_list_cannot_be_deleted(ctx):
    renewing()
    with pytest.raises(Conflict, match="fallback in 1 fallback list"):
        ca_profiles.delete(ca_profiles.by_name("B"))
    ca_profiles.delete(ca_profiles.by_name("C"))  # listed nowhere: goes


# -- preflight: no surprise at failover ----------------------------------------------------------

@pytest.fixture
def dns_ctx(ctx, lab_bind, lab_unbound):
    from tests.services.test_dns_manager import bind_options
    ctx.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]
    zones.add(TECH_ZONE, "rfc2136", bind_options(lab_bind))
    yield ctx


def test_preflight_shows_caa_that_refuses_the_fallback_ca(dns_ctx, lab_bind, names):
    a, b = ca_profiles.by_name("A"), ca_profiles.by_name("B")
    a.directory_meta, b.directory_meta = {"caaIdentities": ["ca-a.example"]}, {"caaIdentities": ["ca-b.example"]}
    db.session().commit()
    domain = names("caa.test")
    cert = renewing(domains_text=domain)
    lab_bind.set_cname(f"_acme-challenge.{domain}", domains.cname_target(domain, TECH_ZONE))
    lab_bind.update("caa.test", add=[(domain, 60, "CAA", '0 issue "ca-a.example"')])
    report = delegation.preflight(cert)
    by_subject = {(c.kind, c.subject): c for c in report.checks}
    assert by_subject[("CAA", domain)].status == "ok"  # the primary may issue
    fallback = by_subject[("CAA", f"{domain} for fallback B")]
    assert fallback.status == "error" and "Fallback B" in fallback.diagnosis and "ca-b.example" in fallback.fix
    assert not report.ok and delegation.blocking_problems(cert) == []  # the primary is not held up


def test_preflight_checks_the_cnames_a_fallback_on_another_zone_needs(dns_ctx, lab_bind, names):
    other = make_profile("Other zone", zone="acme2.tech.test")
    domain = names("customer.test")
    cert = renewing(fallbacks=("B", "Other zone"), domains_text=domain)
    lab_bind.set_cname(f"_acme-challenge.{domain}", domains.cname_target(domain, TECH_ZONE))
    checks = {c.subject: c for c in delegation.preflight(cert).checks if c.kind == "CNAME"}
    assert checks[f"_acme-challenge.{domain}"].status == "ok"
    assert f"_acme-challenge.{domain} for fallback B" not in checks  # same zone: the same CNAME
    needed = checks[f"_acme-challenge.{domain} for fallback Other zone"]
    assert needed.status == "warning" and "acme2.tech.test" in needed.diagnosis
    [(profile, records)] = certificates.fallback_instructions(cert)
    assert profile.id == other.id and records[0].target.endswith(".acme2.tech.test")
