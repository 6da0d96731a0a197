"""Notifications: email received by a real SMTP server (aiosmtpd: STARTTLS, implicit TLS, login),
webhooks received by a real HTTP server (signed, retried), one send per event across threads,
the hourly scan, the CLI, and the issuance hooks against the lab."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import hashlib
import hmac
import ipaddress
import json
import logging
import ssl
import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.lab.http import closed_port, http_server, pebble_tls
from webapp import db
from webapp.errors import ValidationError
from webapp.models import CAProfile, Certificate, NotificationSent, utcnow
from webapp.services import notification_senders as senders, notifications, pipeline

PASSWORD = "s3cret-smtp-Pa55"
HOOK_SECRET = "webhook-signing-secret-0123"


# -- a real SMTP server -------------------------------------------------------------------------

def self_signed(tmp_path, name="smtp-test"):
    """A self-signed certificate for 127.0.0.1 and localhost: (cert path, key path, PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_text(pem)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, pem


class Inbox:
    """The aiosmtpd handler: keeps every message it receives."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes = []
        self.received = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.original_content or envelope.content,
                                                      policy=email.policy.default))
        self.received.set()
        return "250 OK"


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"mailer"
          and auth_data.password == PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@contextmanager
def smtp_server(tls=None, mode="starttls", auth=False):
    """A real SMTP server on a free loopback port; tls = (cert path, key path). Yields (port, inbox)."""
    inbox = Inbox()
    kwargs = {}
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        kwargs["ssl_context" if mode == "tls" else "tls_context"] = context
        if mode == "tls":
            kwargs["server_hostname"] = "127.0.0.1"
    if auth:
        kwargs.update(authenticator=_authenticator, auth_required=True, auth_require_tls=True)
    controller = Controller(inbox, hostname="127.0.0.1", port=closed_port(), **kwargs)
    controller.start()
    try:
        yield controller.port, inbox
    finally:
        controller.stop()


# -- data ----------------------------------------------------------------------------------------

def profile(name="Pebble"):
    p = CAProfile(name=name, module="custom", email="ops@example.com", dns_zone="acme.tech.test")
    db.session().add(p)
    db.session().commit()
    return p


def certificate(p, names=("shop.example", "www.shop.example"), **fields):
    values = dict(profile_id=p.id, domains=list(names), common_name=names[0], status="active",
                  serial="1a2b3c", not_before=utcnow() - timedelta(days=1), not_after=utcnow() + timedelta(days=89),
                  renew_at=utcnow() + timedelta(days=59), renew_reason="rule: a third of the 90-day lifetime remains")
    values.update(fields)
    if "not_before" not in fields:  # a 90-day certificate (shorter ones have scaled reminders)
        values["not_before"] = values["not_after"] - timedelta(days=90)
    cert = Certificate(**values)
    db.session().add(cert)
    db.session().commit()
    return cert


def email_channel(port, name="Ops mail", **over):
    values = {"name": name, "enabled": "1", "host": "127.0.0.1", "port": str(port), "security": "none",
              "from_addr": "sslmanager@example.com", "to": "ops@example.com, oncall@example.com"}
    values.update(over)
    return notifications.save_channel(None, "email", values)


def webhook_channel(url, name="Hook", **over):
    return notifications.save_channel(None, "webhook", {"name": name, "enabled": "1", "url": url,
                                                        "secret": HOOK_SECRET, **over})


class Receiver:
    """A webhook receiver: answers from a script of statuses, keeps what it got."""

    def __init__(self, statuses=(200,)):
        self.statuses = list(statuses)
        self.requests: list[tuple[dict, bytes]] = []
        self.lock = threading.Lock()

    def __call__(self, request):
        body = request.rfile.read(int(request.headers["Content-Length"]))
        with self.lock:
            self.requests.append((dict(request.headers), body))
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return status, {"Content-Type": "text/plain"}, b"ok" if status < 300 else b"boom"


@pytest.fixture
def ctx(app):
    app.config.update(SSLMANAGER_WEBHOOK_BACKOFF=0.05, SSLMANAGER_NOTIFY_TIMEOUT=5)
    with app.app_context():
        yield app


# -- email ---------------------------------------------------------------------------------------

def test_email_over_starttls_with_login_arrives_naming_the_event_and_domains(ctx, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cert_path, key_path, pem = self_signed(tmp_path)
    with smtp_server(tls=(cert_path, key_path), auth=True) as (port, inbox):
        email_channel(port, security="starttls", username="mailer", secret=PASSWORD, ca_bundle=pem)
        cert = certificate(profile())
        results = notifications.emit("issued", cert)
    assert [r.status for r in results] == ["sent"]
    message, = inbox.messages
    assert message["Subject"] == "[SSL Manager] Certificate issued: shop.example, www.shop.example"
    assert inbox.envelopes[0][1] == ["ops@example.com", "oncall@example.com"]
    body = message.get_content()
    assert "Serial:       1a2b3c" in body and "CA profile:   Pebble" in body
    assert PASSWORD not in caplog.text


def test_password_is_stored_encrypted(ctx):
    email_channel(25, security="starttls", username="mailer", secret=PASSWORD)
    with ctx.extensions["sslmanager"].engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT secret FROM sslm_notification_channel").scalar_one()
    assert PASSWORD not in raw and notifications.by_name("Ops mail").secret == PASSWORD


def test_email_over_implicit_tls_arrives(ctx, tmp_path):
    cert_path, key_path, pem = self_signed(tmp_path)
    with smtp_server(tls=(cert_path, key_path), mode="tls") as (port, inbox):
        channel = email_channel(port, security="tls", ca_bundle=pem)
        assert notifications.send_test(channel).ok
    assert inbox.messages[0]["Subject"] == "[SSL Manager] Test notification: Ops mail"


def test_an_untrusted_smtp_certificate_is_refused_with_what_to_do(ctx, tmp_path):
    cert_path, key_path, _ = self_signed(tmp_path)
    with smtp_server(tls=(cert_path, key_path)) as (port, inbox):
        result = notifications.send_test(email_channel(port, security="starttls"))
    assert not result.ok and "not trusted" in result.message and "CA bundle" in result.hint
    assert inbox.messages == []


def test_a_wrong_password_fails_the_test_without_echoing_any_password(ctx, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cert_path, key_path, pem = self_signed(tmp_path)
    with smtp_server(tls=(cert_path, key_path), auth=True) as (port, inbox):
        channel = email_channel(port, security="starttls", username="mailer", secret="not-the-Pa55word", ca_bundle=pem)
        result = notifications.send_test(channel)
    assert not result.ok and "refused the login for mailer" in result.message
    assert "not-the-Pa55word" not in result.message + caplog.text + channel.last_test_message
    assert inbox.messages == []


def test_renewal_failed_mail_carries_the_error_and_goes_once_a_day(ctx):
    with smtp_server() as (port, inbox):
        email_channel(port)
        cert = certificate(profile(), failing_since=utcnow(),
                           last_error="validate: DNS problem: NXDOMAIN looking up TXT for _acme-challenge.shop.example",
                           last_error_hint="Check the CNAME.")
        now = utcnow()
        assert notifications.emit("renewal-failed", cert, now=now)[0].status == "sent"
        assert notifications.emit("renewal-failed", cert, now=now)[0].status == "duplicate"
        assert notifications.emit("renewal-failed", cert, now=now + timedelta(days=1))[0].status == "sent"
    assert len(inbox.messages) == 2
    message = inbox.messages[0]
    assert message["Subject"] == "[SSL Manager] Renewal failed: shop.example, www.shop.example"
    body = message.get_content()
    assert "NXDOMAIN looking up TXT" in body and "What to do: Check the CNAME." in body


def test_email_channel_form_names_each_wrong_field(ctx):
    with pytest.raises(ValidationError) as info:
        notifications.save_channel(None, "email", {"name": "", "host": "smtp://x", "port": "0", "security": "none",
                                                   "username": "u", "secret": "pw", "from_addr": "nope", "to": "a@b.test, bad"})
    assert set(info.value.errors) >= {"name", "host", "port", "security", "from_addr", "to"}
    assert "TLS" in info.value.errors["security"]


# -- webhooks --------------------------------------------------------------------------------------

def test_webhook_is_signed_and_retried_after_a_500(ctx):
    receiver = Receiver([500, 200])
    with http_server(receiver) as base:
        webhook_channel(base + "/hook")
        cert = certificate(profile())
        result, = notifications.emit("renewed", cert)
    assert result.status == "sent" and result.attempts == 2
    (headers, body), (headers2, body2) = receiver.requests
    assert body == body2 and headers["X-SSLManager-Delivery"] == f"renewed:{cert.id}:1a2b3c"
    expected = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-SSLManager-Signature"] == expected and headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["event"] == "renewed" and payload["certificate"]["domains"] == ["shop.example", "www.shop.example"]
    row = db.session().query(NotificationSent).one()
    assert row.ok and row.attempts == 2


def test_webhook_gives_up_after_its_attempts_and_records_why(ctx):
    receiver = Receiver([503])
    with http_server(receiver) as base:
        webhook_channel(base + "/hook")
        result, = notifications.emit("issued", certificate(profile()))
    assert result.status == "failed" and len(receiver.requests) == 3 and "HTTP 503" in result.error
    row = db.session().query(NotificationSent).one()
    assert row.ok is False and row.attempts == 3 and "503" in row.error


def test_webhook_urls_at_metadata_addresses_or_with_credentials_are_refused(ctx):
    for url in ("http://169.254.169.254/latest", "http://[::ffff:169.254.169.254]/", "ftp://hooks.example/x",
                "https://user:password@hooks.example/x"):
        with pytest.raises(ValidationError) as info:
            webhook_channel(url)
        assert "url" in info.value.errors, url


def test_private_webhook_address_is_refused_unless_allowed(ctx):
    ctx.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = False
    with pytest.raises(ValidationError) as info:
        webhook_channel("http://127.0.0.1:9/hook")
    assert "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES" in info.value.errors["url"]
    ctx.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = True
    assert webhook_channel("http://127.0.0.1:9/hook").id


def _message():
    return senders.Message("test", "test:1", "subject", "text", {"event": "test"})


def test_a_webhook_goes_to_the_address_that_was_checked_never_to_a_second_lookup(ctx):
    receiver = Receiver()
    with http_server(receiver) as base:
        port = base.rsplit(":", 1)[1]
        # The name resolves nowhere: the request can only arrive through the vetted address.
        url = f"http://hooks.rebind.invalid:{port}/hook"
        assert senders.send_webhook(url, HOOK_SECRET, _message(), timeout=5, address="127.0.0.1") == 1
    headers, _ = receiver.requests[0]
    assert headers["Host"] == f"hooks.rebind.invalid:{port}"


def test_a_pinned_https_webhook_still_checks_the_certificate_against_the_name(ctx, lab_pebble, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", lab_pebble.ca_bundle)
    receiver = Receiver()
    with http_server(receiver, tls=pebble_tls(lab_pebble)) as base:
        port = base.rsplit(":", 1)[1]
        good = f"https://localhost:{port}/hook"   # the listener certificate's name
        assert senders.send_webhook(good, HOOK_SECRET, _message(), timeout=5, address="127.0.0.1") == 1
        with pytest.raises(senders.DeliveryError) as caught:
            senders.send_webhook(f"https://other.invalid:{port}/hook", HOOK_SECRET, _message(), timeout=5,
                                 attempts=1, address="127.0.0.1")
    assert "certificate" in str(caught.value).lower() and len(receiver.requests) == 1


def test_webhook_allow_list_limits_the_hosts_also_at_send_time(ctx):
    receiver = Receiver()
    with http_server(receiver) as base:
        webhook_channel(base + "/hook")
        notifications.save_options({"expiry_days": "30 14 7 1", "webhook_allowlist": "*.example.com\nhooks.example.net"})
        with pytest.raises(ValidationError) as info:
            webhook_channel(base + "/other", name="Other")
        assert "allow-list" in info.value.errors["url"]
        result, = notifications.emit("issued", certificate(profile()))
    assert result.status == "failed" and "allow-list" in result.error and receiver.requests == []


def test_one_event_emitted_by_many_threads_at_once_is_sent_once(ctx):
    receiver = Receiver()
    with http_server(receiver) as base:
        webhook_channel(base + "/hook")
        cert_id = certificate(profile()).id
        app = ctx
        start = threading.Barrier(6)
        outcomes = []

        def emit():
            with app.app_context():
                cert = db.session().get(Certificate, cert_id)
                start.wait()
                outcomes.extend(r.status for r in notifications.emit("issued", cert))
                db.session().remove()
        threads = [threading.Thread(target=emit) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert sorted(outcomes) == ["duplicate"] * 5 + ["sent"]
    assert len(receiver.requests) == 1
    assert db.session().query(NotificationSent).count() == 1


def test_a_profile_channel_hears_only_its_own_certificates(ctx):
    receiver = Receiver()
    with http_server(receiver) as base:
        mine, other = profile("Mine"), profile("Other")
        webhook_channel(base + "/mine", name="Mine only", profile_id=str(mine.id), events=["issued"])
        notifications.emit("issued", certificate(other, names=("other.example",)))
        notifications.emit("renewed", certificate(mine, names=("mine.example",), serial="99"))
        notifications.emit("issued", certificate(mine, names=("mine2.example",), serial="98"))
    assert [json.loads(b)["certificate"]["common_name"] for _, b in receiver.requests] == ["mine2.example"]


# -- the hourly scan -------------------------------------------------------------------------------

def test_scan_announces_a_certificate_that_will_not_renew_once_per_threshold(ctx):
    receiver = Receiver()
    with http_server(receiver) as base:
        webhook_channel(base + "/hook")
        p = profile()
        manual = certificate(p, names=("manual.example",), auto_renew=False, not_after=utcnow() + timedelta(days=10))
        certificate(p, names=("fine.example",), not_after=utcnow() + timedelta(days=10),
                    renew_at=utcnow() + timedelta(days=5))  # renews by itself: no reminder
        now = utcnow()
        assert notifications.scan(now) == {"expiring": 1}
        assert notifications.scan(now + timedelta(hours=1)) == {"expiring": 0}  # same threshold: nothing
        assert notifications.scan(now + timedelta(days=4)) == {"expiring": 1}   # 6 days left: the 7-day one
    payloads = [json.loads(b) for _, b in receiver.requests]
    assert [p_["days"] for p_ in payloads] == [14, 7]
    assert payloads[0]["certificate"]["common_name"] == "manual.example" and "auto-renew is off" in payloads[0]["reason"]
    assert receiver.requests[0][0]["X-SSLManager-Delivery"] == f"expiring:{manual.id}:1a2b3c:14"


def test_an_hourly_scan_costs_a_few_queries_however_many_certificates_it_looks_at(ctx):
    from sqlalchemy import event
    receiver = Receiver()
    with http_server(receiver) as base:
        webhook_channel(base + "/hook")
        p = profile()
        for i in range(30):
            certificate(p, names=(f"n{i}.example",), auto_renew=False, not_after=utcnow() + timedelta(days=10))
        now = utcnow()
        assert notifications.scan(now) == {"expiring": 30}
        db.session().remove()  # a new look starts with nothing loaded, as the scheduler's does
        statements = []

        def seen(_conn, _cursor, statement, *_):
            statements.append(statement)
        engine = ctx.extensions["sslmanager"].engine
        event.listen(engine, "before_cursor_execute", seen)
        try:
            assert notifications.scan(now + timedelta(hours=1)) == {"expiring": 0}
        finally:
            event.remove(engine, "before_cursor_execute", seen)
    assert len(receiver.requests) == 30
    assert len(statements) <= 8, statements  # not one (or three) per certificate


def test_scan_reports_failing_renewals_broken_delegations_and_failing_profiles_daily(ctx):
    receiver = Receiver()
    with http_server(receiver) as base:
        webhook_channel(base + "/hook")
        p = profile()
        p.last_test_ok, p.last_test_message = False, "fetch directory: connection refused"
        certificate(p, names=("failing.example",), failing_since=utcnow(), last_error="new order: 500")
        certificate(p, names=("cname.example",), delegation_ok=False,
                    delegation_message="_acme-challenge.cname.example: no CNAME")
        now = utcnow()
        first = notifications.scan(now)
        again = notifications.scan(now + timedelta(minutes=5))
        tomorrow = notifications.scan(now + timedelta(days=1))
    assert first == {"renewal-failed": 1, "delegation-broken": 1, "profile-failing": 1}
    assert sum(again.values()) == 0 and tomorrow == first
    events = {json.loads(b)["event"]: json.loads(b) for _, b in receiver.requests}
    assert events["profile-failing"]["error"] == "fetch directory: connection refused"
    assert "no CNAME" in events["delegation-broken"]["error"]


def test_expiry_days_are_a_setting_with_the_default_30_14_7_1(ctx):
    assert notifications.expiry_days() == [30, 14, 7, 1]
    notifications.save_options({"expiry_days": "60, 3", "webhook_allowlist": ""})
    assert notifications.expiry_days() == [60, 3]
    with pytest.raises(ValidationError) as info:
        notifications.save_options({"expiry_days": "0, x", "webhook_allowlist": "bad host!"})
    assert set(info.value.errors) == {"expiry_days", "webhook_allowlist"}


# -- CLI -------------------------------------------------------------------------------------------

def test_notify_test_cli_exits_0_when_sent_and_1_when_not(app, runner):
    with smtp_server() as (port, inbox):
        with app.app_context():
            email_channel(port)
            email_channel(closed_port(), name="Nowhere")
        result = runner.invoke(args=["sslmanager", "notify", "test", "Ops mail"])
        assert result.exit_code == 0, result.output
        assert "sent" in result.output and len(inbox.messages) == 1
    result = runner.invoke(args=["sslmanager", "notify", "test", "Nowhere"])
    assert result.exit_code == 1 and "not sent" in result.output
    assert runner.invoke(args=["sslmanager", "notify", "test", "missing"]).exit_code == 1


# -- the issuance hooks, against the lab -----------------------------------------------------------

def test_issuance_notifies_even_when_one_channel_is_down(lab_app, cnames):
    from tests.services.test_issuance import new_cert
    from webapp.services import certificates
    lab_app.config.update(SSLMANAGER_WEBHOOK_ATTEMPTS=1)
    receiver = Receiver()
    with http_server(receiver) as base, lab_app.app_context():
        webhook_channel(base + "/hook")
        webhook_channel(f"http://127.0.0.1:{closed_port()}/hook", name="Down")
        cert = new_cert("customer.test")
        cnames(cert)
        assert pipeline.process(cert.id) == "active"
        cert = certificates.get(cert.id)
    (headers, body), = receiver.requests
    assert headers["X-SSLManager-Event"] == "issued" and json.loads(body)["certificate"]["serial"] == cert.serial
    with lab_app.app_context():
        lines = [e.message for e in certificates.timeline(cert)]
    assert any(line.startswith("notified (certificate issued): Hook sent; Down failed") for line in lines)


def test_a_failed_renewal_notifies_with_the_error(lab_app, lab_bind, cnames):
    from tests.services.test_renewals import ca_unreachable, issued
    from webapp.services import certificates
    receiver = Receiver()
    with http_server(receiver) as base, lab_app.app_context():
        cert = issued("other.test", cnames)
        webhook_channel(base + "/hook")
        ca_unreachable()
        assert pipeline.renew(cert.id, reason="test") == "active"
        cert = certificates.get(cert.id)
    (headers, body), = receiver.requests
    payload = json.loads(body)
    assert payload["event"] == "renewal-failed" and payload["error"] == cert.last_error and cert.last_error


def test_a_short_lived_certificate_is_not_expiring_the_day_it_is_issued(ctx):
    """Reminders are set in days for 90-day certificates; a 6-day one's shrink with its
    lifetime (30 days -> 2 days, 7 days -> 11.2 hours), and the message says hours, not days."""
    receiver = Receiver()
    with http_server(receiver) as base:
        webhook_channel(base + "/hook")
        issued = utcnow()
        certificate(profile(), names=("six.example",), auto_renew=False, not_before=issued,
                    not_after=issued + timedelta(days=6))
        assert notifications.scan(issued + timedelta(minutes=5)) == {}   # unscaled: "expiring in 30 days" now
        assert notifications.scan(issued + timedelta(days=3)) == {}      # 3 days left: still early
        assert notifications.scan(issued + timedelta(days=4, hours=1)) == {"expiring": 1}  # < 2 days: the 30
        assert notifications.scan(issued + timedelta(days=4, hours=2)) == {"expiring": 0}
        assert notifications.scan(issued + timedelta(days=5, hours=13)) == {"expiring": 1}  # < 11.2 h: the 7
    payloads = [json.loads(b) for _, b in receiver.requests]
    assert [p_["days"] for p_ in payloads] == [30, 7]
    assert payloads[0]["title"] == "Certificate expiring in 47 hours"
    assert payloads[1]["title"] == "Certificate expiring in 11 hours"


def test_a_short_lived_renewal_is_overdue_after_a_share_of_its_lifetime(ctx):
    now = utcnow()
    p = profile()
    six = certificate(p, names=("six.example",), not_before=now - timedelta(days=3),
                      not_after=now + timedelta(days=3), renew_at=now - timedelta(hours=2))
    ninety = certificate(p, names=("ninety.example",), renew_at=now - timedelta(hours=2))
    assert "overdue" in notifications.will_not_renew(six, now)   # 2 h late of 6 days: the scheduler is down
    assert notifications.will_not_renew(ninety, now) == ""       # 2 h late of 90 days: not yet
