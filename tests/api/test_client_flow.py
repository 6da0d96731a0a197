"""The README's PHP-style client flow, as the same `curl` commands, against the live API on the
lab (Pebble, the technical zone on BIND, Unbound): create a certificate, read the CNAME to show
the customer, ask for processing and poll the status, fetch the PEM. Then the rest of a
certificate's life through the API: renew, versions, PKCS#12, revoke, delete, events; and the
CA profile test and zone check."""
from __future__ import annotations

import json
import subprocess
import time

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography import x509

from tests.live import served
from webapp.services import tokens


def curl(*args: str) -> tuple[int, dict]:
    """Run the real curl; (HTTP status, JSON body)."""
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    body, _, status = out.rpartition("\n")
    return int(status), (json.loads(body) if body.strip().startswith(("{", "[")) else {"raw": body})


@pytest.fixture
def live(lab_app):
    with lab_app.app_context():
        secret = tokens.create("php-panel", ["read", "write", "issue", "keys:read"]).secret
    with served(lab_app) as base:
        yield base, secret


def _poll(base, auth, cert_id, want, seconds=60):
    deadline = time.monotonic() + seconds
    while True:
        status, cert = curl("-H", auth, f"{base}/api/v1/certificates/{cert_id}")
        assert status == 200
        if cert["status"] == want or time.monotonic() > deadline:
            return cert
        time.sleep(0.3)


def test_the_php_style_client_flow_with_curl(live, lab_bind, names):
    base, secret = live
    domain = names("customer.test")
    auth = f"Authorization: Bearer {secret}"
    # 1. create a certificate (the first profile: GET /api/v1/ca-profiles lists them)
    status, profiles = curl("-H", auth, f"{base}/api/v1/ca-profiles")
    assert status == 200 and profiles["items"][0]["last_test_ok"] is True
    status, cert = curl("-X", "POST", "-H", auth, "-H", "Content-Type: application/json",
                        "-H", "Idempotency-Key: order-4711",
                        "-d", json.dumps({"domains": [domain], "profile_id": profiles["items"][0]["id"],
                                          "tags": ["web-03"]}),
                        f"{base}/api/v1/certificates")
    assert status == 201, cert
    assert cert["status"] == "pending"
    # 2. the CNAME to show the customer (who creates it)
    record = cert["dns_records"][0]
    assert record["name"] == f"_acme-challenge.{domain}" and record["type"] == "CNAME"
    lab_bind.set_cname(record["name"], record["target"])
    # 3. ask now instead of waiting for the scheduler's next look, then poll the status
    status, started = curl("-X", "POST", "-H", auth, f"{base}/api/v1/certificates/{cert['id']}/process")
    assert status == 202, started
    cert = _poll(base, auth, cert["id"], "active")
    assert cert["status"] == "active", cert
    assert cert["renew_at"] and cert["renew_reason"] and cert["versions"][0]["number"] == 1
    # 4. fetch the PEM (with the key: keys:read)
    status, pem = curl("-H", auth, f"{base}/api/v1/certificates/{cert['id']}/pem?include_key=true")
    assert status == 200
    leaf = x509.load_pem_x509_certificate(pem["cert"].encode())
    assert format(leaf.serial_number, "x") == pem["serial"] and pem["key"].startswith("-----BEGIN")
    assert pem["fullchain"].startswith(pem["cert"]) and pem["chain"].count("BEGIN CERTIFICATE") >= 1


def test_a_certificates_life_through_the_api(live, lab_bind, names, lab_app):
    import requests
    base, secret = live
    h = {"Authorization": f"Bearer {secret}"}
    domain = names("customer.test")
    profile_id = requests.get(f"{base}/api/v1/ca-profiles", headers=h).json()["items"][0]["id"]
    test = requests.post(f"{base}/api/v1/ca-profiles/{profile_id}/test", headers=h)
    assert test.status_code == 200 and test.json()["ok"] and test.json()["message"] == "API is available"
    assert "newOrder" in test.json()["endpoints"]
    zones = requests.get(f"{base}/api/v1/zones", headers=h).json()["items"]
    check = requests.post(f"{base}/api/v1/zones/{zones[0]['name']}/check", headers=h)
    assert check.status_code == 200 and check.json()["last_check_ok"] is True
    cert = requests.post(f"{base}/api/v1/certificates", headers=h,
                         json={"domains": [domain], "profile_id": profile_id, "tags": ["web-04"]}).json()
    cert_id = cert["id"]
    for record in cert["dns_records"]:
        lab_bind.set_cname(record["name"], record["target"])
    assert requests.post(f"{base}/api/v1/certificates/{cert_id}/process", headers=h).status_code == 202
    auth = f"Authorization: Bearer {secret}"
    assert _poll(base, auth, cert_id, "active")["status"] == "active"
    first_serial = requests.get(f"{base}/api/v1/certificates/{cert_id}/pem", headers=h).json()["serial"]
    # renew now: a new version; the first stays downloadable
    renew = requests.post(f"{base}/api/v1/certificates/{cert_id}/renew", headers=h)
    assert renew.status_code == 202, renew.text
    deadline = time.monotonic() + 60
    while len(requests.get(f"{base}/api/v1/certificates/{cert_id}", headers=h).json()["versions"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    _poll(base, auth, cert_id, "active")
    second = requests.get(f"{base}/api/v1/certificates/{cert_id}/pem", headers=h).json()
    assert second["version"] == 2 and second["serial"] != first_serial
    old = requests.get(f"{base}/api/v1/certificates/{cert_id}/files/cert.pem?version=1", headers=h)
    assert old.status_code == 200 and old.headers["Content-Type"].startswith("application/x-pem-file")
    assert format(x509.load_pem_x509_certificate(old.content).serial_number, "x") == first_serial
    p12 = requests.post(f"{base}/api/v1/certificates/{cert_id}/pkcs12", headers=h, json={"password": "p12-password"})
    assert p12.status_code == 200 and p12.headers["Content-Type"] == "application/x-pkcs12"
    key, leaf, _ = pkcs12.load_key_and_certificates(p12.content, b"p12-password")
    assert format(leaf.serial_number, "x") == second["serial"]
    # tags, filters
    assert requests.post(f"{base}/api/v1/certificates/{cert_id}/tags", headers=h,
                         json={"tags": ["edge"]}).json()["tags"] == ["edge", "web-04"]
    listed = requests.get(f"{base}/api/v1/certificates?tag=edge&status=active&q={domain[:8]}", headers=h).json()
    assert [c["id"] for c in listed["items"]] == [cert_id]
    assert requests.delete(f"{base}/api/v1/certificates/{cert_id}/tags/edge", headers=h).json()["tags"] == ["web-04"]
    # delete an Active certificate: the confirmation first
    refused = requests.delete(f"{base}/api/v1/certificates/{cert_id}", headers=h)
    assert refused.status_code == 422 and "confirm" in refused.json()["errors"]
    revoked = requests.post(f"{base}/api/v1/certificates/{cert_id}/revoke", headers=h, json={"reason": 4})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    again = requests.post(f"{base}/api/v1/certificates/{cert_id}/revoke", headers=h, json={})
    assert again.status_code == 409 and again.headers["Content-Type"] == "application/problem+json"
    assert requests.post(f"{base}/api/v1/certificates/{cert_id}/renew", headers=h).status_code == 409
    assert requests.delete(f"{base}/api/v1/certificates/{cert_id}", headers=h).status_code == 204
    assert requests.get(f"{base}/api/v1/certificates/{cert_id}", headers=h).status_code == 404
    events = requests.get(f"{base}/api/v1/events?actor=token:php-panel", headers=h).json()
    actions = {e["action"] for e in events["items"]}
    assert {"certificate created", "renewal requested", "certificate revoked", "certificate deleted",
            "PKCS#12 downloaded", "CA profile tested"} <= actions
