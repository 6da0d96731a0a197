"""CA directory URLs that would make SSL Manager fetch from inside the network: loopback and
private addresses are refused unless SSLMANAGER_ALLOW_PRIVATE_ADDRESSES is on (the lab turns it
on); link-local and cloud-metadata addresses are always refused, whether written as an IP
literal, reached through name resolution, or through a redirect from an allowed server."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.faults.conftest import PROFILE, new_cert, signed_in
from tests.lab.faultproxy import NEW_ORDER
from tests.lab.http import http_server, pebble_tls
from webapp import db
from webapp.errors import ValidationError
from webapp.services import ca_profiles, certificates, pipeline

ALWAYS_REFUSED = [
    "https://169.254.169.254/latest/meta-data/",   # AWS, GCP, Azure, OpenStack metadata
    "https://169.254.170.2/v2/credentials",        # ECS task metadata
    "https://[fe80::1]/dir",                       # IPv6 link-local
    "https://[fd00:ec2::254]/latest/meta-data/",   # AWS IPv6 metadata
    "https://[::ffff:169.254.169.254]/dir",        # the IPv4 metadata address, IPv4-mapped
    "https://2852039166/dir",                      # 169.254.169.254 as one number: the resolver expands it
    "https://0xa9.0xfe.0xa9.0xfe/dir",             # ... and in hex
    "https://0251.0376.0251.0376/dir",             # ... and in octal
]
PRIVATE = [
    "https://127.0.0.1:14000/dir", "https://[::1]:14000/dir", "https://localhost:14000/dir",
    "https://10.1.2.3/dir", "https://172.16.0.1/dir", "https://192.168.1.10/dir",
    "https://[fd12:3456::1]/dir", "https://0.0.0.0/dir", "https://2130706433/dir",  # 127.0.0.1 as one number
]
PUBLIC = ["https://8.8.8.8/acme/directory"]  # validated only, never contacted here

_connects: list | None = None  # socket.connect targets while recording
_resolved: list | None = None  # host names looked up (socket.getaddrinfo) while recording


def _audit(event: str, args: tuple) -> None:
    if event == "socket.connect" and _connects is not None:
        _connects.append(args[1])
    elif event == "socket.getaddrinfo" and _resolved is not None:
        _resolved.append(args[0])


sys.addaudithook(_audit)  # a real observation of every connection attempt, no mocking


@pytest.fixture
def profile_app(app, lab_pebble):
    with app.app_context():
        profile = ca_profiles.create({"name": "Target", "module": "custom"})
        ca_profiles.update(profile, good(lab_pebble.directory_url, lab_pebble))
    return app


def good(url: str, pebble=None) -> dict:
    return {"name": "Target", "directory_url": url, "email": "ops@example.com", "dns_zone": "acme.tech.test",
            "dns_ttl": "60", "api_timeout": "2",
            "ca_bundle": Path(pebble.ca_bundle).read_text() if pebble else ""}


def refusal(app, url: str) -> str | None:
    """The directory URL field's error when saving `url`, or None when it is accepted."""
    with app.app_context():
        profile = ca_profiles.by_name("Target")
        try:
            ca_profiles.update(profile, {**good(url), "ca_bundle": profile.ca_bundle})
        except ValidationError as exc:
            db.session().rollback()
            return exc.errors.get("directory_url")
        return None


@pytest.mark.parametrize("allow_private", [True, False], ids=["private-allowed", "private-refused"])
def test_link_local_and_metadata_directories_are_always_refused(profile_app, allow_private):
    profile_app.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = allow_private
    refused = {url: refusal(profile_app, url) for url in ALWAYS_REFUSED}
    assert all(msg and "link-local or cloud-metadata" in msg for msg in refused.values()), refused


def test_private_and_loopback_directories_depend_on_the_setting(profile_app):
    profile_app.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = False
    refused = {url: refusal(profile_app, url) for url in PRIVATE}
    assert all(msg and "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES" in msg for msg in refused.values()), refused
    assert [refusal(profile_app, url) for url in PUBLIC] == [None]
    profile_app.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = True
    assert {url: refusal(profile_app, url) for url in PRIVATE} == dict.fromkeys(PRIVATE)


def test_the_edit_form_shows_the_refusal_beside_the_field_and_keeps_the_profile(profile_app):
    client = signed_in(profile_app)
    with profile_app.app_context():
        profile = ca_profiles.by_name("Target")
        pid, before = profile.id, profile.directory_url
    resp = client.post(f"/ca/{pid}/edit", data=good("https://169.254.169.254/latest/meta-data/"))
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "link-local or cloud-metadata" in html
    with profile_app.app_context():
        assert ca_profiles.get(pid).directory_url == before


def test_save_and_test_does_not_follow_a_redirect_to_the_metadata_address(profile_app, lab_pebble):
    global _connects
    asked = []

    def redirector(request):
        asked.append(request.path)
        return 302, {"Location": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"}, b""

    with http_server(redirector, tls=pebble_tls(lab_pebble)) as base:
        assert refusal(profile_app, f"{base}/dir") is None  # a loopback CA: allowed in the lab
        _connects = []
        try:
            with profile_app.app_context():
                result = ca_profiles.test(ca_profiles.by_name("Target"))
        finally:
            tried, _connects = _connects, None
    assert asked == ["/dir"]
    assert not any(str(target[0]).endswith("169.254.169.254") for target in tried), tried
    assert not result.ok and result.step == "fetch directory"
    assert "redirect" in result.message and "169.254.169.254" in result.message


def test_a_directory_listing_an_endpoint_at_the_metadata_address_is_refused(proxied_app, proxy):
    global _connects
    proxy.directory_extra = {"keyChange": "http://169.254.169.254/latest/meta-data/"}
    _connects = []
    try:
        with proxied_app.app_context():
            result = ca_profiles.test(ca_profiles.by_name(PROFILE))
    finally:
        tried, _connects = _connects, None
    assert not result.ok and result.step == "fetch directory"
    assert "keyChange" in result.message and "cloud-metadata" in result.message
    assert not any(str(target[0]).endswith("169.254.169.254") for target in tried), tried


def test_acme_requests_never_follow_a_redirect(proxied_app, proxy, cnames):
    followed = []
    with http_server(lambda request: (followed.append(request.path) or 200, {}, b"{}")) as elsewhere, \
            proxied_app.app_context():
        cert = new_cert("redirected.customer.test")
        cnames(cert)
        proxy.inject("POST", NEW_ORDER, 307, headers={"Location": f"{elsewhere}/order"})
        pipeline.process(cert.id)
        cert = certificates.get(cert.id)
    assert followed == []
    assert "answered with a redirect, which SSL Manager does not follow" in cert.last_error
    assert proxy.new_orders() == 0


def test_a_directory_entry_that_is_no_endpoint_is_shown_apart_and_never_resolved(proxied_app, proxy,
                                                                                 cnames):
    """Let's Encrypt's directory carries a random key pointing at a forum post: not an endpoint
    (RFC 8555 7.1.1), so neither listed nor resolved, and Save and Test and issuance go on."""
    global _resolved
    forum = "https://forum.ca-announcements.invalid/t/adding-random-entries-to-the-directory/33417"
    proxy.directory_extra = {"kX3vQ9_zr": forum}
    client = signed_in(proxied_app)
    with proxied_app.app_context():
        pid = ca_profiles.by_name(PROFILE).id
    _resolved = []
    try:
        html = client.post(f"/ca/{pid}/test").get_data(as_text=True)
        with proxied_app.app_context():
            cert = new_cert("random-key.customer.test")
            cnames(cert)
            assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error
            lines = [event.message for event in certificates.timeline(certificates.get(cert.id))]
    finally:
        looked_up, _resolved = _resolved, None
    assert "API is available" in html
    endpoints, others = html.split("<h3>Other entries</h3>")
    assert "newOrder" in endpoints and "kX3vQ9_zr" not in endpoints
    assert "kX3vQ9_zr" in others.split("</table>")[0] and forum in others
    assert any("fetch directory" in line and "newOrder" in line for line in lines), lines
    assert not any("kX3vQ9_zr" in line for line in lines), lines
    assert looked_up and not any("ca-announcements" in str(host) for host in looked_up), looked_up
