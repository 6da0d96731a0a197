"""acme2certifier in the lab: it serves, validates DNS-01 through its own Unbound on port 53,
issues through SSL Manager's own code, and its switches (refuse `replaces`, live renewalInfo
settings, account loss, restart) do what the lead's tests rely on."""
from __future__ import annotations

import datetime
import subprocess

import dns.rcode
import josepy as jose
import pytest
import requests
from acme import messages
from cryptography import x509

from tests.conftest import add_a2c_profile, add_lab_zone
from tests.lab.servers import LAB_EAB_KEYS, TECH_ZONE
from webapp.errors import AcmeError
from webapp.services import ca_profiles, certificates, pipeline

ALREADY_REPLACED = "urn:ietf:params:acme:error:alreadyReplaced"


class NewOrderReplacing(messages.NewOrder):
    """acme's NewOrder has no `replaces` (RFC 9773 §5) yet: the raw field for these tests."""

    replaces: str = jose.field("replaces", omitempty=True)


def leaf_of(cert) -> x509.Certificate:
    return x509.load_pem_x509_certificate(certificates.export_files(cert)["cert.pem"].encode())


def issue(app, a2c, cnames, domains: str, **values):
    """Create, request and process a certificate against `a2c`'s profile; returns it Active."""
    with app.app_context():
        cert = certificates.create({"profile_id": ca_profiles.by_name("acme2certifier").id,
                                    "domains": domains, **values})
        cert = certificates.request(cert)
        cnames(cert)
        assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error
        return certificates.get(cert.id)


@pytest.fixture
def a2c_lab_app(app, lab_bind, lab_unbound):
    """Callable(a2c) -> the app with a tested profile "acme2certifier" for that instance."""
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]

    def setup(a2c, **fields):
        with app.app_context():
            add_lab_zone(lab_bind)
            result = ca_profiles.test(add_a2c_profile(a2c, **fields))
            assert result.ok, ca_profiles.str_of(result)
        return app
    return setup


def profile_client(app):
    """The app's ACME client for the "acme2certifier" profile, with its stored account."""
    profile = ca_profiles.by_name("acme2certifier")
    return ca_profiles.acme_client(profile, account_key=profile.account_key,
                                   account_url=profile.account_url)


def test_directory_offers_renewal_info_profiles_and_caa_identities(lab_a2c):
    mark = lab_a2c.mark()
    directory = requests.get(lab_a2c.directory_url, verify=lab_a2c.ca_bundle, timeout=5).json()
    base = lab_a2c.directory_url.rsplit("/", 1)[0]
    assert directory["newOrder"] == f"{base}/acme/neworders"
    assert directory["renewalInfo"] == f"{base}/acme/renewal-info"
    assert set(directory["meta"]["profiles"]) == {"classic", "shortlived"}
    assert directory["meta"]["caaIdentities"] == ["a2c.lab.test"]
    assert "externalAccountRequired" not in directory["meta"]
    assert [(e["method"], e["path"], e["status"]) for e in lab_a2c.requests_log(since=mark)] == [
        ("GET", "/directory", 200)]


def test_resolver_is_its_own_unbound_on_port_53_stubbing_the_lab_bind(lab_a2c, lab_bind):
    resolver = lab_a2c.resolver
    assert resolver.port == 53 and resolver.host.startswith("127.") and resolver.host != "127.0.0.1"
    assert f'dns_server_list: ["{resolver.host}"]' in lab_a2c.config_text()
    reply = resolver.query(TECH_ZONE, "SOA")
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer


def test_apex_and_wildcard_issue_through_the_app(a2c_app, lab_a2c, cnames, tmp_path):
    mark = lab_a2c.mark()
    cert = issue(a2c_app, lab_a2c, cnames, "example.customer.test *.example.customer.test")
    with a2c_app.app_context():
        assert cert.status == "active"
        leaf = leaf_of(cert)
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(sans.get_values_for_type(x509.DNSName)) == [
            "*.example.customer.test", "example.customer.test"]
        issuing = x509.load_pem_x509_certificate(lab_a2c.issuing_pem().encode())
        assert leaf.issuer == issuing.subject
        files = certificates.export_files(cert)
        for name in ("cert.pem", "chain.pem"):
            (tmp_path / name).write_text(files[name])
        (tmp_path / "root.pem").write_text(lab_a2c.root_pem())
        out = subprocess.run(["openssl", "verify", "-CAfile", tmp_path / "root.pem", "-untrusted",
                              tmp_path / "chain.pem", tmp_path / "cert.pem"],
                             capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
    orders = lab_a2c.new_orders(since=mark)
    assert len(orders) == 1
    assert sorted(i["value"] for i in orders[0]["identifiers"]) == [
        "*.example.customer.test", "example.customer.test"]
    assert "replaces" not in orders[0] and "profile" not in orders[0]
    new_order = lab_a2c.requests_log(path="/acme/neworders", since=mark)[0]
    assert new_order["status"] == 201 and new_order["protected"]["kid"].startswith("https://")


def test_a_requested_profile_reaches_the_ca_and_sets_the_lifetime(a2c_app, lab_a2c, cnames, names):
    mark = lab_a2c.mark()
    cert = issue(a2c_app, lab_a2c, cnames, names("customer.test"), acme_profile="shortlived")
    with a2c_app.app_context():
        leaf = leaf_of(cert)
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert abs(lifetime - datetime.timedelta(days=6)) < datetime.timedelta(minutes=5)
    assert [order.get("profile") for order in lab_a2c.new_orders(since=mark)] == ["shortlived"]


def test_refuse_replaces_answers_already_replaced_with_a_usable_nonce(a2c_factory, a2c_lab_app):
    a2c = a2c_factory()
    app = a2c_lab_app(a2c)
    with app.app_context():
        client = profile_client(app)
        url = client.directory.endpoints["newOrder"]
        body = NewOrderReplacing(identifiers=[messages.Identifier(
            typ=messages.IDENTIFIER_FQDN, value="refused.customer.test")], replaces="aGk.aGk")
        a2c.refuse_replaces()
        with pytest.raises(AcmeError) as refused, client._net.step("new order", url):
            client._post(url, body)
        assert refused.value.problem_type == ALREADY_REPLACED and refused.value.status == 409, vars(refused.value)
        answered = a2c.requests_log(path="/acme/neworders")[-1]
        assert answered["answered_by"] == "lab" and answered["payload"]["replaces"] == "aGk.aGk"
        # The next POST signs with the nonce the 409 carried, and the CA takes it.
        mark = a2c.mark()
        order = client.new_order(["refused.customer.test"])
        assert order.status == "pending"
        after = a2c.requests_log(since=mark)
        assert [e["path"] for e in after] == ["/acme/neworders"]
        assert after[0]["protected"]["nonce"] == answered["replay_nonce"]
        # Switched off, `replaces` goes through to acme2certifier, which accepts it.
        a2c.refuse_replaces(False)
        with client._net.step("new order", url):
            response = client._post(url, body)
        assert response.status_code == 201
        assert "answered_by" not in a2c.requests_log(path="/acme/neworders")[-1]


def test_renewal_info_changes_live_and_accounts_can_be_forgotten(a2c_factory, a2c_lab_app, cnames,
                                                                 names):
    a2c = a2c_factory(retry_after_timeout=120)
    app = a2c_lab_app(a2c)
    cert = issue(app, a2c, cnames, names("customer.test"))
    with app.app_context():
        pem = certificates.export_files(cert)["cert.pem"]
        not_after = leaf_of(cert).not_valid_after_utc
        client = profile_client(app)
        now = datetime.datetime.now(datetime.timezone.utc)
        mark = a2c.mark()
        ari = client.renewal_info(pem)
        assert ari["retryAfter"] == 120
        assert now < ari["suggestedWindow"]["start"] < ari["suggestedWindow"]["end"]
        assert abs(ari["suggestedWindow"]["end"] - not_after) < datetime.timedelta(seconds=2)
        a2c.set_renewal_info(renewal_force=True, retry_after_timeout=60)
        forced = client.renewal_info(pem)
        assert forced["retryAfter"] == 60 and forced["suggestedWindow"]["start"] < now
        assert len(a2c.renewal_info_gets(since=mark)) == 2
        # A restart keeps the database and the live settings.
        a2c.restart()
        assert client.renewal_info(pem)["retryAfter"] == 60
        assert client.new_order([cert.domains[0]]).status == "pending"
        assert a2c.forget_accounts() == 1
        with pytest.raises(AcmeError) as lost:
            client.new_order([cert.domains[0]])
        assert lost.value.problem_type == "urn:ietf:params:acme:error:accountDoesNotExist"
        # The certificates stay known: ARI still answers for them.
        assert client.renewal_info(pem)["retryAfter"] == 60
        old_url = client.account_url
        client._net.account = None  # newAccount is signed with the JWK
        with pytest.raises(AcmeError) as unknown, client._net.step("find account", old_url):
            client._post(client.directory.endpoints["newAccount"],
                         messages.NewRegistration(only_return_existing=True))
        assert unknown.value.problem_type == "urn:ietf:params:acme:error:accountDoesNotExist"
        # The same key registers again, as a new account.
        assert client.register("ops@example.com").url != old_url
        assert client.new_order([cert.domains[0]]).status == "pending"


def test_restart_on_a_fresh_database_forgets_everything(a2c_factory, a2c_lab_app):
    a2c = a2c_factory()
    app = a2c_lab_app(a2c)
    with app.app_context():
        client = profile_client(app)
        with pytest.raises(TypeError, match="port"):
            a2c.restart(port=1)
        a2c.restart(fresh_database=True, cert_validity_days=3, profiles={})
        assert "profiles" not in a2c.directory()["meta"]
        with pytest.raises(AcmeError) as lost:
            client.new_order(["fresh.customer.test"])
        assert lost.value.problem_type == "urn:ietf:params:acme:error:accountDoesNotExist"


def test_eab_is_required_and_accepted(a2c_factory, a2c_lab_app):
    a2c = a2c_factory(eab_keys=LAB_EAB_KEYS)
    assert a2c.directory()["meta"]["externalAccountRequired"] is True
    app = a2c_lab_app(a2c, eab_kid="kid-1", eab_hmac=LAB_EAB_KEYS["kid-1"])
    with app.app_context():
        assert ca_profiles.by_name("acme2certifier").account_url.startswith("https://")
    new_account = a2c.requests_log(path="/acme/newaccount")[-1]
    assert new_account["status"] == 201
    assert new_account["payload"]["externalAccountBinding"]["payload"]


def test_missing_venv_names_the_fix(lab_bind, monkeypatch, tmp_path):
    from tests.lab import acme2certifier
    from tests.lab.servers import Acme2Certifier, LabServerError
    monkeypatch.setattr(acme2certifier, "A2C_VENV", tmp_path / "nowhere")
    with pytest.raises(LabServerError, match=r"\./dev test"):
        Acme2Certifier(lab_bind).start()
