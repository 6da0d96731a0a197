"""CA failover end to end against two real Pebbles: the primary stops, the renewal comes from
the fallback (a chain that verifies against the fallback's root, ARI asked of the fallback, a
notification sent); the primary starts again, and the next renewal is the primary's. A first
issuance fails over too, and its revocation goes to the CA that issued it."""
from __future__ import annotations

from datetime import timedelta

from tests.conftest import add_lab_profile, add_lab_zone
from tests.lab.faultproxy import running_proxy
from tests.services.test_issuance import assert_verifies
from tests.services.test_notifications import email_channel, smtp_server
from webapp import db
from webapp.models import utcnow
from webapp.services import ca_profiles, certificates, pipeline, renewals


def two_thirds_gone(cert) -> None:
    """Time passes: the current version has a quarter of its lifetime left (failover's margin is a
    third). Only the stored dates move; the CA's certificate is what it is."""
    version = certificates.current_version(cert)
    version.not_before, version.not_after = utcnow() - timedelta(days=60), utcnow() + timedelta(days=20)
    cert.renew_at = utcnow()  # and the renewal it planned is due
    db.session().commit()


class AnyAri(dict):
    """The proxy's renewalInfo: one window for every certID."""

    def __init__(self, window):
        super().__init__()
        self.window = window

    def __contains__(self, key):
        return key.startswith("/ari/")

    def __getitem__(self, key):
        return self.window, {"Retry-After": "21600"}


def test_a_renewal_fails_over_while_the_primary_is_down_and_returns_to_it_after(
        app, lab_bind, lab_unbound, pebble_factory, cnames, names, tmp_path):
    app.config.update(SSLMANAGER_DNS_RESOLVERS=[f"127.0.0.1:{lab_unbound.port}"],
                      SSLMANAGER_FAILOVER_UNREACHABLE=0, SSLMANAGER_NOTIFY_TIMEOUT=5)
    primary_ca, fallback_ca = pebble_factory(), pebble_factory()
    with running_proxy(fallback_ca) as proxy, smtp_server() as (smtp_port, inbox), app.app_context():
        start, end = utcnow() + timedelta(days=1), utcnow() + timedelta(days=2)
        proxy.directory_extra["renewalInfo"] = "/ari/"  # the fallback offers ARI, the primary not
        proxy.ari = AnyAri({"suggestedWindow": {"start": start.isoformat().replace("+00:00", "Z"),
                                                "end": end.isoformat().replace("+00:00", "Z")}})
        add_lab_zone(lab_bind)
        primary = add_lab_profile(primary_ca, name="Primary")
        fallback = add_lab_profile(fallback_ca, name="Fallback", directory_url=f"{proxy.base}/dir")
        assert ca_profiles.test(primary).ok and ca_profiles.test(fallback).ok
        email_channel(smtp_port)
        cert = certificates.create({"profile_id": primary.id, "domains": names("customer.test"),
                                    "fallbacks": ["Fallback"]})
        certificates.request(cert)
        cnames(cert)
        assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error
        assert certificates.current_version(cert).profile_id == primary.id

        # The primary stops. The renewal's attempt there fails and fails over, due again at once.
        two_thirds_gone(cert)
        primary_ca.halt()
        assert pipeline.renew(cert.id, reason="test") == "active"
        cert = certificates.get(cert.id)
        assert cert.attempt_profile_id == fallback.id and "unreachable" in cert.failover_reason
        assert cert.id in renewals.due()
        assert pipeline.renew(cert.id, reason="due") == "active"
        cert = certificates.get(cert.id)
        version = certificates.current_version(cert)
        assert version.number == 2 and version.profile_id == fallback.id
        assert "Primary's directory has been unreachable" in version.failover_reason
        assert cert.attempt_profile_id is None and cert.failover_reason == ""  # next time: the primary
        assert_verifies(cert, fallback_ca, tmp_path)
        assert start <= cert.renew_at <= end  # planned from the fallback's ARI
        subjects = [m["Subject"] for m in inbox.messages]
        assert any("Failed over to a fallback CA" in s for s in subjects), subjects
        assert any(line.message.startswith("failover: Primary's directory has been unreachable")
                   for line in certificates.timeline(cert))

        # ARI follows the CA that issued the current version: the fallback, the primary being down.
        asked = proxy.count("GET", "/ari/")
        cert.ari_next_poll_at = utcnow()
        db.session().commit()
        assert renewals.poll_ari(cert.id) == "polled" and proxy.count("GET", "/ari/") == asked + 1

        # The primary is back (as a fresh CA: new roots, the account forgotten and recovered).
        primary_ca.resume()
        two_thirds_gone(cert)
        assert pipeline.renew(cert.id, reason="test") == "active", certificates.get(cert.id).last_error
        cert = certificates.get(cert.id)
        version = certificates.current_version(cert)
        assert version.number == 3 and version.profile_id == primary.id and version.failover_reason == ""
        assert_verifies(cert, primary_ca, tmp_path)
        assert ca_profiles.get(primary.id).unreachable_since is None


def test_a_first_issuance_fails_over_and_revocation_goes_to_the_ca_that_issued_it(
        app, lab_bind, lab_unbound, pebble_factory, cnames, names, tmp_path):
    app.config.update(SSLMANAGER_DNS_RESOLVERS=[f"127.0.0.1:{lab_unbound.port}"],
                      SSLMANAGER_FAILOVER_UNREACHABLE=0)
    primary_ca, fallback_ca = pebble_factory(), pebble_factory()
    with app.app_context():
        add_lab_zone(lab_bind)
        primary = add_lab_profile(primary_ca, name="Primary")
        fallback = add_lab_profile(fallback_ca, name="Fallback")
        assert ca_profiles.test(primary).ok and ca_profiles.test(fallback).ok
        ca_profiles.update(primary, {**_fields(primary), "fallback_1": str(fallback.id)})  # the default
        primary_ca.halt()
        cert = certificates.request(certificates.create({"profile_id": primary.id,
                                                         "domains": names("customer.test")}))
        cnames(cert)
        assert pipeline.process(cert.id) == "processing"  # the primary's attempt failed: failed over
        assert certificates.get(cert.id).attempt_profile_id == fallback.id
        assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error
        cert = certificates.get(cert.id)
        assert certificates.current_version(cert).profile_id == fallback.id
        assert_verifies(cert, fallback_ca, tmp_path)
        certificates.revoke(cert, 4)  # the primary is still down: only the fallback can revoke it
        assert certificates.get(cert.id).status == "revoked"


def _fields(profile) -> dict:
    return {"name": profile.name, "directory_url": profile.directory_url, "ca_bundle": profile.ca_bundle,
            "email": profile.email, "dns_zone": profile.dns_zone, "allow_wildcard": "1",
            "dns_ttl": "30", "api_timeout": "10"}
