"""dns-persist-01 on the pages: the form offers it only where the CA does (else says why), the
certificate page shows the record with a copy button and the validation mode, the printable page
has the record, and the CA profile page warns that changing the account invalidates the
records. Against acme2certifier with the option on (and the shared one, without it)."""
from __future__ import annotations

import html
import re

from tests.conftest import add_a2c_profile, add_lab_zone, signed_in
from tests.services.test_persist import ISSUER, a2c, persistent  # noqa: F401 (a2c: fixture)
from webapp.services import ca_profiles

__all__ = ["a2c"]


def text(resp) -> str:
    return html.unescape(resp.get_data(as_text=True))


def test_the_form_offers_dns_persist_01_where_the_ca_does(app, a2c):  # noqa: F811
    client = signed_in(app)
    page = text(client.get("/certificates/new"))
    assert re.search(r'value="dns-persist-01" id="f-validation-persist"\s*>', page)  # enabled
    with app.app_context():
        profile_id = ca_profiles.by_name("acme2certifier").id
    resp = client.post("/certificates/new", data={"profile_id": profile_id, "domains": "persist.customer.test",
                                                 "validation": "dns-persist-01", "action": "request"})
    assert resp.status_code == 302
    detail = text(client.get(resp.headers["Location"]))
    with app.app_context():
        account = ca_profiles.by_name("acme2certifier").account_url
    record = f'_validation-persist.persist.customer.test. IN TXT "{ISSUER}; accounturi={account}"'
    assert f'data-copy="{record}"' in detail
    assert "dns-persist-01: one TXT record, set once" in detail  # the Validation fact
    assert "a probe order for acme.tech.test at Save and Test" in detail  # where the issuer comes from
    printable = text(client.get(resp.headers["Location"] + "/instructions"))
    assert record in printable and "_acme-challenge" not in printable
    profile_page = text(client.get(f"/ca/{profile_id}/edit"))
    assert "Changing the account" in profile_page and "1\n    certificate validates by dns-persist-01" in profile_page


def test_the_form_says_why_it_is_not_available(app, lab_bind, lab_unbound, lab_a2c):
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]
    with app.app_context():
        add_lab_zone(lab_bind)
        profile = add_a2c_profile(lab_a2c)
        assert ca_profiles.test(profile).ok
        profile_id = profile.id
    client = signed_in(app)
    page = text(client.get("/certificates/new"))
    assert re.search(r'value="dns-persist-01" id="f-validation-persist"\s*disabled', page)
    assert "dns-persist-01 is not available: The CA of acme2certifier does not offer dns-persist-01" in page
    swapped = text(client.get(f"/certificates/acme-profiles?profile_id={profile_id}"))
    assert 'id="validation-field" hx-swap-oob="true"' in swapped and "does not offer" in swapped
    resp = client.post("/certificates/new", data={"profile_id": profile_id, "domains": "customer.test",
                                                 "validation": "dns-persist-01", "action": "request"})
    assert resp.status_code == 422 and "dns-persist-01 is not available" in text(resp)


def test_cli_add_with_validation_persist_prints_the_record(app, a2c):  # noqa: F811
    runner = app.test_cli_runner()
    result = runner.invoke(args=["sslmanager", "cert", "add", "--ca", "acme2certifier", "--validation", "persist",
                                 "cli.customer.test", "*.cli.customer.test"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        account = ca_profiles.by_name("acme2certifier").account_url
    assert (f'_validation-persist.cli.customer.test. IN TXT "{ISSUER}; accounturi={account}; policy=wildcard"'
            in result.output)
    assert "_acme-challenge" not in result.output
