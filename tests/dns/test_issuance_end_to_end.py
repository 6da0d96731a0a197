"""A certificate issues end to end with each DNS provider writing the technical zone: builtin
(SSL Manager's own server), rfc2136 (BIND) and powerdns (PowerDNS's HTTP API). Pebble validates
through an Unbound whose stub zone for the technical zone points at that provider's server."""
from __future__ import annotations

import pytest

from tests.conftest import add_lab_profile
from tests.dns.conftest import PDNS_API_KEY
from tests.lab.proc import free_port
from tests.lab.servers import TECH_ZONE, TSIG_KEY_NAME, TSIG_SECRET, Unbound
from webapp.crypto import key_matches_cert
from webapp.dns.builtin.server import DnsServer
from webapp.services import certificates, pipeline, zones


def issue_through(app, unbound, pebble_factory, cnames):
    """Issue apex + wildcard for customer.test with Pebble resolving through `unbound`."""
    pebble = pebble_factory(dns_server=f"127.0.0.1:{unbound.port}")
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{unbound.port}"]
    profile = add_lab_profile(pebble)
    cert = certificates.request(certificates.create(
        {"profile_id": profile.id, "domains": "customer.test *.customer.test"}))
    cnames(cert)
    assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error
    files = certificates.export_files(certificates.get(cert.id))
    assert key_matches_cert(files["privkey.pem"], files["cert.pem"])
    return cert


@pytest.fixture
def stubbed_unbound(lab_bind):
    """An Unbound with the customer zones on BIND and the technical zone wherever the test says."""
    started = []

    def make(tech_zone_server: str) -> Unbound:
        unbound = Unbound(lab_bind, extra_stub_zones={TECH_ZONE: tech_zone_server}).start()
        started.append(unbound)
        return unbound
    yield make
    for unbound in started:
        unbound.stop()


def test_issues_with_the_builtin_provider_and_server(app, lab_bind, stubbed_unbound, pebble_factory, cnames):
    port = free_port()
    with app.app_context():
        zones.add(TECH_ZONE, "builtin", {"listen": f"127.0.0.1:{port}", "nameservers": f"ns1.{TECH_ZONE}"})
        with DnsServer(app.extensions["sslmanager"].engine, [("127.0.0.1", port)]):
            cert = issue_through(app, stubbed_unbound(f"127.0.0.1@{port}"), pebble_factory, cnames)
        assert zones.provider_for(TECH_ZONE).list_txt() == {}  # cleaned up
        assert any("via builtin" in e.message for e in certificates.timeline(cert))


def test_issues_with_rfc2136_to_bind(app, lab_bind, stubbed_unbound, pebble_factory, cnames):
    with app.app_context():
        zones.add(TECH_ZONE, "rfc2136", {"server": f"127.0.0.1:{lab_bind.port}", "tsig_key_name": TSIG_KEY_NAME,
                                         "tsig_secret": TSIG_SECRET})
        cert = issue_through(app, stubbed_unbound(f"127.0.0.1@{lab_bind.port}"), pebble_factory, cnames)
        assert any("via rfc2136" in e.message for e in certificates.timeline(cert))


def test_issues_with_the_powerdns_api(app, lab_pdns, stubbed_unbound, pebble_factory, cnames):
    with app.app_context():
        zones.add(TECH_ZONE, "powerdns", {"api_url": lab_pdns.api_url, "api_key": PDNS_API_KEY,
                                          "dns_server": f"127.0.0.1:{lab_pdns.port}"})
        cert = issue_through(app, stubbed_unbound(f"127.0.0.1@{lab_pdns.port}"), pebble_factory, cnames)
        assert any("via powerdns" in e.message for e in certificates.timeline(cert))
        assert all(not name.startswith(certificates.instructions(cert)[0].target)
                   for name in zones.provider_for(TECH_ZONE).list_txt())
