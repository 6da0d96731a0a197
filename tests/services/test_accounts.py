"""The profile's ACME account: one per profile whatever the concurrency, and repaired with no
operator action when the CA forgets it (a reset, a deactivated account, a restored backup)."""
from __future__ import annotations

import pytest

from tests.conftest import add_lab_profile, add_lab_zone
from tests.lab.faultproxy import NEW_ORDER, running_proxy
from webapp import db
from webapp.acme.client import AcmeClient
from webapp.models import AuditEvent
from webapp.services import ca_profiles, certificates, pipeline, renewals

NEW_ACCOUNT = "/sign-me-up"  # Pebble 2.4's newAccount path


@pytest.fixture
def own_pebble(app, lab_bind, lab_unbound, pebble_factory):
    """An app whose profile "Pebble" talks to a Pebble of this test's own (it gets restarted)."""
    pebble = pebble_factory()
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]
    with app.app_context():
        add_lab_zone(lab_bind)
        assert ca_profiles.test(add_lab_profile(pebble)).ok
    return app, pebble


def _issue(domains, cnames):
    cert = certificates.create({"profile_id": ca_profiles.by_name("Pebble").id, "domains": domains})
    cert = certificates.request(cert)
    cnames(cert)
    assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error
    return certificates.get(cert.id)


def _lines(cert):
    return [e.message for e in certificates.timeline(cert)]


def test_a_restarted_ca_that_forgot_the_account_still_renews(own_pebble, cnames):
    app, pebble = own_pebble
    with app.app_context():
        cert = _issue("customer.test", cnames)
        lost = ca_profiles.by_name("Pebble").account_url
        pebble.restart()  # Pebble keeps nothing: the account, its orders, its certificates
        assert pipeline.renew(cert.id, reason="test") == "active"
        cert = certificates.get(cert.id)
        assert len(certificates.versions(cert)) == 2 and not cert.last_error
        profile = ca_profiles.by_name("Pebble")
        assert profile.account_url and profile.account_url != lost
        assert any("no longer knows" in line for line in _lines(cert))
        audit = db.session().query(AuditEvent).filter_by(action="ACME account recovered").one()
        assert lost in audit.summary
        # The repaired account is the one used from now on: a second renewal needs no repair.
        assert pipeline.renew(cert.id, reason="test") == "active"
        assert db.session().query(AuditEvent).filter_by(action="ACME account recovered").count() == 1


def test_an_order_of_the_forgotten_account_is_replaced_by_a_new_one(own_pebble, cnames):
    app, pebble = own_pebble
    with app.app_context():
        cert = _issue("customer.test", cnames)
        renewals.start(cert, reason="test")
        profile = ca_profiles.by_name("Pebble")
        client = ca_profiles.acme_client(profile, account_key=profile.account_key,
                                         account_url=profile.account_url)
        old_order = client.new_order(cert.domains).url
        client.close()
        cert.order_url = old_order  # as if the process died after "order created"
        db.session().commit()
        pebble.restart()
        assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error
        version = certificates.versions(certificates.get(cert.id))[0]
        assert version.order_url != old_order and version.number == 2


def test_a_deactivated_account_gets_a_new_key_and_account(own_pebble, cnames):
    app, _pebble = own_pebble
    with app.app_context():
        profile = ca_profiles.by_name("Pebble")
        old_key, old_url = profile.account_key, profile.account_url
        client = AcmeClient(ca_profiles.directory_url(profile), old_key.encode(), timeout=10,
                            ca_bundle=ca_profiles.ca_bundle_path(profile), account_url=old_url)
        from acme import messages
        with client._net.step("deactivate", old_url):
            client._post(old_url, messages.UpdateRegistration(status="deactivated"))
        client.close()
        cert = _issue("customer.test", cnames)
        profile = ca_profiles.by_name("Pebble")
        assert profile.account_key != old_key and profile.account_url != old_url
        assert any("deactivated" in line for line in _lines(cert))


def test_account_repair_is_tried_once_per_attempt(own_pebble, cnames):
    """A CA that answers accountDoesNotExist to every order is not asked in a loop."""
    app, pebble = own_pebble
    with app.app_context(), running_proxy(pebble) as proxy:
        profile = ca_profiles.by_name("Pebble")
        ca_profiles.update(profile, {**_fields(profile), "directory_url": f"{proxy.base}/dir"})
        assert ca_profiles.test(profile).ok
        probed = proxy.count("POST", NEW_ORDER)  # Save and Test's probe order
        proxy.inject("POST", NEW_ORDER, 400, times=10, problem={
            "type": "urn:ietf:params:acme:error:accountDoesNotExist", "detail": "no such account"})
        cert = certificates.create({"profile_id": profile.id, "domains": "customer.test"})
        cert = certificates.request(cert)
        cnames(cert)
        assert pipeline.process(cert.id) != "active"
        assert proxy.count("POST", NEW_ORDER) == probed + 2  # the order, and once more after the repair
        assert "account" in certificates.get(cert.id).last_error


def _fields(profile):
    return {"name": profile.name, "email": profile.email, "dns_zone": profile.dns_zone,
            "allow_wildcard": "1", "dns_ttl": str(profile.dns_ttl),
            "api_timeout": str(profile.api_timeout), "ca_bundle": profile.ca_bundle}


@pytest.mark.parametrize("how_many", [8, 20])
def test_concurrent_first_orders_on_an_untested_profile_make_one_account(
        app, lab_bind, lab_unbound, lab_pebble, cnames, runner, how_many):
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]
    with running_proxy(lab_pebble) as proxy:
        with app.app_context():
            add_lab_zone(lab_bind)
            profile = add_lab_profile(lab_pebble, directory_url=f"{proxy.base}/dir")  # never tested
            assert not profile.account_url and not profile.account_key
            ids = []
            for n in range(how_many):
                cert = certificates.create({"profile_id": profile.id, "domains": f"n{n}.customer.test"})
                cert = certificates.request(cert)
                cnames(cert)
                ids.append(cert.id)
        result = runner.invoke(args=["sslmanager", "cert", "process", *map(str, ids), "--here",
                                     "--wait", "120", "--concurrency", str(how_many)])
        assert f"{how_many} of {how_many} Active." in result.output, result.output
        assert proxy.count("POST", NEW_ACCOUNT, status=201) == 1  # one account at the CA
    with app.app_context():
        profile = ca_profiles.by_name("Pebble")
        kids = {v.account_url for cid in ids for v in certificates.versions(certificates.get(cid))}
        assert kids == {profile.account_url}
