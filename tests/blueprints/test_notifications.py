"""The Notifications page (channels, Send test, options) and the deploy partial on a
certificate's page; secrets never in HTML."""
from __future__ import annotations

import re

from tests.lab.http import http_server
from tests.services.test_notifications import PASSWORD, Receiver, self_signed, smtp_server
from webapp import db
from webapp.models import CAProfile, Certificate, NotificationChannel
from webapp.services import certificates

HX = {"HX-Request": "true"}


def email_form(port=25, **over):
    data = {"name": "Ops mail", "enabled": "1", "host": "127.0.0.1", "port": str(port), "security": "starttls",
            "username": "mailer", "secret": PASSWORD, "from_addr": "sslmanager@example.com",
            "to": "ops@example.com", "events": ["issued", "renewal-failed"]}
    data.update(over)
    return data


def channel_id(app, name="Ops mail"):
    with app.app_context():
        return db.session().query(NotificationChannel).filter_by(name=name).one().id


def test_nav_lists_notifications_after_dns_manager(admin_client):
    html = admin_client.get("/notifications/").get_data(as_text=True)
    assert html.index(">DNS Manager<") < html.index(">Notifications<")
    assert "+ Email channel" in html and "+ Webhook channel" in html and 'name="expiry_days"' in html


def test_adding_an_email_channel_lists_it_and_never_shows_the_password(app, admin_client):
    form_html = admin_client.get("/notifications/new/email").get_data(as_text=True)
    for field in ("name", "host", "port", "security", "username", "secret", "from_addr", "to", "ca_bundle",
                  "profile_id", "events", "enabled"):
        assert f'name="{field}"' in form_html, field
    resp = admin_client.post("/notifications/new/email", data=email_form())
    assert resp.status_code == 302, resp.get_data(as_text=True)
    html = admin_client.get("/notifications/").get_data(as_text=True)
    assert "Ops mail" in html and "ops@example.com via 127.0.0.1:25" in html and "Renewal failed" in html
    edit = admin_client.get(f"/notifications/{channel_id(app)}/edit").get_data(as_text=True)
    assert "A password is set" in edit and 'name="secret_clear"' in edit
    assert PASSWORD not in html + edit + form_html


def test_a_wrong_field_is_marked_and_what_was_typed_stays_but_not_the_password(admin_client):
    resp = admin_client.post("/notifications/new/email", data=email_form(to="not-an-address", name="Typed name"))
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and 'id="err-to"' in html and "Typed name" in html
    assert PASSWORD not in html


def test_blank_password_keeps_it_and_the_checkbox_removes_it(app, admin_client):
    admin_client.post("/notifications/new/email", data=email_form())
    cid = channel_id(app)
    assert admin_client.post(f"/notifications/{cid}/edit", data=email_form(secret="")).status_code == 302
    with app.app_context():
        assert db.session().get(NotificationChannel, cid).secret == PASSWORD
    resp = admin_client.post(f"/notifications/{cid}/edit", data=email_form(secret="", username="", secret_clear="1"))
    assert resp.status_code == 302, resp.get_data(as_text=True)
    with app.app_context():
        assert db.session().get(NotificationChannel, cid).secret is None


def test_send_test_shows_the_result_in_a_modal_and_the_mail_arrives(app, admin_client, tmp_path):
    cert_path, key_path, pem = self_signed(tmp_path)
    with smtp_server(tls=(cert_path, key_path), auth=True) as (port, inbox):
        admin_client.post("/notifications/new/email", data=email_form(port, ca_bundle=pem))
        html = admin_client.post(f"/notifications/{channel_id(app)}/test", headers=HX).get_data(as_text=True)
    assert "<dialog data-modal" in html and "Sent." in html and len(inbox.messages) == 1
    page = admin_client.get("/notifications/").get_data(as_text=True)
    assert 'class="sslm-ok">sent<' in page and PASSWORD not in html + page


def test_send_test_failure_says_what_to_do(app, admin_client, tmp_path):
    cert_path, key_path, _ = self_signed(tmp_path)
    with smtp_server(tls=(cert_path, key_path)) as (port, _inbox):
        admin_client.post("/notifications/new/email", data=email_form(port, username="", secret=""))
        html = admin_client.post(f"/notifications/{channel_id(app)}/test").get_data(as_text=True)  # no JavaScript
    assert "Not sent: failed at “SMTP STARTTLS”" in html and "not trusted" in html and "CA bundle" in html and "<dialog data-modal open" in html


def test_webhook_channel_needs_a_signing_secret_and_a_safe_url(admin_client):
    resp = admin_client.post("/notifications/new/webhook", data={"name": "Hook", "url": "http://169.254.169.254/x"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and 'id="err-url"' in html and "metadata" in html and 'id="err-secret"' in html


def test_webhook_send_test_reaches_the_receiver(app, admin_client):
    receiver = Receiver()
    with http_server(receiver) as base:
        resp = admin_client.post("/notifications/new/webhook", data={
            "name": "Hook", "enabled": "1", "url": base + "/hook", "secret": "a-long-enough-secret"})
        assert resp.status_code == 302, resp.get_data(as_text=True)
        html = admin_client.post(f"/notifications/{channel_id(app, 'Hook')}/test", headers=HX).get_data(as_text=True)
    assert "Sent." in html and receiver.requests[0][0]["X-SSLManager-Signature"].startswith("sha256=")
    assert "a-long-enough-secret" not in admin_client.get("/notifications/").get_data(as_text=True)


def test_options_save_expiry_days_and_the_allow_list_in_place(admin_client):
    html = admin_client.post("/notifications/options", headers=HX,
                             data={"expiry_days": "21, 3", "webhook_allowlist": "*.example.com"}).get_data(as_text=True)
    assert 'id="options-form"' in html and "Notification options saved." in html and "21, 3" in html
    html = admin_client.post("/notifications/options", headers=HX,
                             data={"expiry_days": "never", "webhook_allowlist": ""}).get_data(as_text=True)
    assert 'id="err-expiry_days"' in html and "never" in html
    assert "*.example.com" in admin_client.get("/notifications/").get_data(as_text=True)


def test_a_number_of_5000_digits_is_a_field_error_not_a_crash(app, admin_client):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production: a crash is a 500 page
    huge = "9" * 5000  # int() refuses more than 4,300 digits with a ValueError
    resp = admin_client.post("/notifications/options", data={"expiry_days": f"30, {huge}"})
    assert resp.status_code == 422 and "expiry_days" in resp.get_data(as_text=True)  # the field cap
    long = "9" * 900  # under the field cap: the number itself is judged, beside its field
    resp = admin_client.post("/notifications/options", data={"expiry_days": f"30, {long}"})
    assert resp.status_code == 422 and 'id="err-expiry_days"' in resp.get_data(as_text=True)
    resp = admin_client.post("/notifications/new/email", data=email_form(port=long, profile_id=long))
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and 'id="err-port"' in html and 'id="err-profile_id"' in html
    from webapp.services.inputs import whole_number  # and 5,000 digits, had they come through
    assert whole_number(huge, 1, 65535) is None


def test_deleting_a_channel(app, admin_client):
    admin_client.post("/notifications/new/email", data=email_form())
    resp = admin_client.post(f"/notifications/{channel_id(app)}/delete")
    assert resp.status_code == 302
    html = admin_client.get("/notifications/").get_data(as_text=True)
    assert "Channel Ops mail deleted." in html and 'id="channel-' not in html


# -- the deploy partial on the certificate page ----------------------------------------------------

def a_certificate(app):
    with app.app_context():
        profile = CAProfile(name="P", module="custom", email="ops@example.com", dns_zone="acme.tech.test")
        db.session().add(profile)
        db.session().commit()
        return certificates.create({"profile_id": profile.id, "domains": "shop.example"}).id


def test_certificate_page_shows_the_deploy_fields(app, admin_client):
    cert_id = a_certificate(app)
    html = admin_client.get(f"/certificates/{cert_id}").get_data(as_text=True)
    assert 'id="deploy"' in html
    for field in ("deploy_dir", "deploy_command", "deploy_probe"):
        assert f'name="{field}"' in html


def test_deploy_fields_save_in_place_and_errors_show_beside_them(app, admin_client):
    cert_id = a_certificate(app)
    html = admin_client.post(f"/certificates/{cert_id}/deploy", headers=HX, data={
        "deploy_dir": "relative", "deploy_command": "x 'y", "deploy_probe": "nope", "action": "save"}).get_data(as_text=True)
    assert html.lstrip().startswith("<section id=\"deploy\"") or re.search(r'<section id="deploy"', html)
    for field in ("deploy_dir", "deploy_command", "deploy_probe"):
        assert f'id="err-{field}"' in html
    html = admin_client.post(f"/certificates/{cert_id}/deploy", headers=HX, data={
        "deploy_dir": "/srv/tls/shop", "deploy_command": "systemctl reload nginx", "deploy_probe": "127.0.0.1:443",
        "action": "save"}).get_data(as_text=True)
    assert "Deploy settings saved." in html and "/srv/tls/shop" in html
    with app.app_context():
        cert = db.session().get(Certificate, cert_id)
        assert (cert.deploy_dir, cert.deploy_command, cert.deploy_probe) == (
            "/srv/tls/shop", "systemctl reload nginx", "127.0.0.1:443")
    resp = admin_client.post(f"/certificates/{cert_id}/deploy", data={"deploy_dir": "", "action": "save"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/certificates/{cert_id}#deploy")


def test_webhook_send_test_diagnoses_a_refused_connection_at_once_and_updates_the_row(app, admin_client):
    import socket
    import time as clock
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    resp = admin_client.post("/notifications/new/webhook", data={
        "name": "Dead hook", "enabled": "1", "url": f"http://127.0.0.1:{port}/hook", "secret": "a-long-enough-secret"})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    cid = channel_id(app, "Dead hook")
    started = clock.monotonic()
    html = admin_client.post(f"/notifications/{cid}/test", headers=HX).get_data(as_text=True)
    assert clock.monotonic() - started < 3  # one attempt, no backoff between retries
    assert "failed at “webhook connect”" in html and f"connection refused by 127.0.0.1:{port}" in html
    assert "What to do:</strong> Check the URL&#39;s host and port" in html
    assert "ConnectionError" not in html and "Errno" not in html and "must answer 2xx" not in html
    # The row comes along, out of band, with its new "Last test".
    assert f'<tr id="channel-{cid}" hx-swap-oob="true">' in html and 'class="sslm-bad"' in html.split("<tr", 1)[1]


def test_webhook_send_test_says_what_an_http_refusal_means(app, admin_client):
    receiver = Receiver([404])
    with http_server(receiver) as base:
        admin_client.post("/notifications/new/webhook", data={
            "name": "Wrong path", "enabled": "1", "url": base + "/nope", "secret": "a-long-enough-secret"})
        html = admin_client.post(f"/notifications/{channel_id(app, 'Wrong path')}/test", headers=HX).get_data(as_text=True)
    assert "failed at “webhook answer”" in html and "HTTP 404" in html and "Check the URL&#39;s path" in html
    assert len(receiver.requests) == 1
