"""Deploy after issue/renewal: files (key 0600), a command without a shell and with a time limit,
and a TLS probe against a real local TLS server that must serve the new serial; the lab issues
the certificates for the end-to-end cases."""
from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import stat
import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from webapp import db
from webapp.errors import ValidationError
from webapp.models import CAProfile, Certificate, CertificateVersion, utcnow
from webapp.services import certificates, deploy, pipeline


@contextmanager
def tls_server(files):
    """A real TLS server on loopback; files() -> (chain, key) paths, read at every connection
    (so a deploy that rewrites them is what the next client sees). Yields (port, SNI names seen)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.1)
    names: list[str] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            try:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(*files())
                context.sni_callback = lambda _obj, name, _ctx: names.append(name)
                conn.settimeout(5)
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                conn.close()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], names
    finally:
        stop.set()
        thread.join()
        sock.close()


def self_signed(names):
    """(cert PEM, key PEM, serial hex) for names."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem, f"{cert.serial_number:x}"


def issued_locally(**deploy_fields):
    """A certificate with one stored version (self-signed: for the cases that need no CA)."""
    profile = CAProfile(name="Local", module="custom", email="ops@example.com", dns_zone="acme.tech.test")
    db.session().add(profile)
    db.session().flush()
    names = ["site.example", "www.site.example"]
    cert_pem, key_pem, serial = self_signed(names)
    cert = Certificate(profile_id=profile.id, domains=names, common_name=names[0], status="active",
                       serial=serial, not_after=utcnow() + timedelta(days=30), **deploy_fields)
    db.session().add(cert)
    db.session().flush()
    db.session().add(CertificateVersion(certificate_id=cert.id, number=1, cert_pem=cert_pem, chain_pem="",
                                        private_key=key_pem, serial=serial, not_before=utcnow(),
                                        not_after=utcnow() + timedelta(days=30)))
    db.session().commit()
    return cert


@pytest.fixture
def ctx(app):
    app.config.update(SSLMANAGER_DEPLOY_PROBE_WAIT=0)
    with app.app_context():
        yield app


def test_files_are_written_with_the_key_readable_by_the_owner_only(ctx, tmp_path):
    cert = issued_locally(deploy_dir=str(tmp_path / "out"))
    result = deploy.run(cert)
    assert result.ok and "wrote cert.pem, chain.pem, fullchain.pem, privkey.pem" in result.message
    assert stat.S_IMODE(os.stat(tmp_path / "out" / "privkey.pem").st_mode) == 0o600
    assert (tmp_path / "out" / "fullchain.pem").read_text() == certificates.export_files(cert)["fullchain.pem"]
    assert cert.deploy_last_ok and cert.deploy_last_at is not None


def test_the_command_runs_without_a_shell(ctx, tmp_path):
    cert = issued_locally(deploy_command=f"echo $HOME && touch {tmp_path / 'x'}")
    result = deploy.run(cert)
    assert result.ok and "$HOME && touch" in result.message  # echoed literally: no shell expanded it
    assert not (tmp_path / "x").exists()


def test_the_command_gets_the_certificate_but_not_sslmanager_settings(ctx, monkeypatch):
    monkeypatch.setenv("SSLMANAGER_ENCRYPTION_KEY", "must-not-leak")
    cert = issued_locally(deploy_command="printenv SSLMANAGER_SERIAL SSLMANAGER_DOMAINS")
    result = deploy.run(cert)
    assert result.ok and cert.serial in result.message and "site.example www.site.example" in result.message
    cert.deploy_command = "printenv SSLMANAGER_ENCRYPTION_KEY"
    result = deploy.run(cert)
    assert not result.ok and "must-not-leak" not in result.message


def test_a_failing_command_is_recorded_with_its_output(ctx):
    cert = issued_locally(deploy_command="sh -c 'echo reload failed >&2; exit 3'")
    result = deploy.run(cert)
    assert not result.ok and "exited with status 3: reload failed" in result.message
    assert cert.deploy_last_ok is False and "exited with status 3" in cert.deploy_last_message
    assert "deploy: " in certificates.timeline(cert)[-1].message


def test_a_command_past_its_time_limit_is_stopped(ctx):
    ctx.config["SSLMANAGER_DEPLOY_TIMEOUT"] = 1
    cert = issued_locally(deploy_command="sleep 30")
    started = dt.datetime.now()
    result = deploy.run(cert)
    assert not result.ok and "did not finish within 1 s" in result.message
    assert dt.datetime.now() - started < timedelta(seconds=10)


def test_a_missing_program_says_so(ctx):
    result = deploy.run(issued_locally(deploy_command="/nonexistent/reload-it now"))
    assert not result.ok and "/nonexistent/reload-it" in result.message and "No such file" in result.message


def test_the_probe_reports_a_server_still_serving_another_certificate(ctx, tmp_path):
    other_pem, other_key, other_serial = self_signed(["old.example"])
    (tmp_path / "c.pem").write_text(other_pem)
    (tmp_path / "k.pem").write_text(other_key)
    with tls_server(lambda: (tmp_path / "c.pem", tmp_path / "k.pem")) as (port, names):
        cert = issued_locally(deploy_probe=f"127.0.0.1:{port}")
        result = deploy.run(cert)
    assert not result.ok
    assert f"serves serial {other_serial} for site.example, not the new {cert.serial}" in result.message
    assert names == ["site.example"]


def test_the_probe_of_a_closed_port_fails_with_the_reason(ctx):
    from tests.lab.http import closed_port
    result = deploy.run(issued_locally(deploy_probe=f"127.0.0.1:{closed_port()}"))
    assert not result.ok and "TLS probe of 127.0.0.1:" in result.message and "refused" in result.message


def test_nothing_configured_means_nothing_to_do(ctx):
    assert deploy.run(issued_locally()) is None


def test_deploy_settings_are_checked(ctx):
    cert = issued_locally()
    with pytest.raises(ValidationError) as info:
        deploy.update_settings(cert, {"deploy_dir": "relative/dir", "deploy_command": "reload 'unbalanced",
                                      "deploy_probe": "no-port"})
    assert set(info.value.errors) == {"deploy_dir", "deploy_command", "deploy_probe"}
    deploy.update_settings(cert, {"deploy_dir": "/etc/ssl/site", "deploy_command": "systemctl reload nginx",
                                  "deploy_probe": "[::1]:8443"})
    assert deploy.parse_probe(cert.deploy_probe) == ("::1", 8443)


def test_a_command_longer_than_4_kib_is_refused_before_it_is_parsed(ctx):
    cert = issued_locally()
    started = dt.datetime.now()
    with pytest.raises(ValidationError) as info:
        deploy.update_settings(cert, {"deploy_command": "'" + "x" * 1_000_000})  # shlex: seconds
    assert "under 4096 characters" in info.value.errors["deploy_command"]
    assert dt.datetime.now() - started < timedelta(seconds=1)
    deploy.update_settings(cert, {"deploy_command": "echo " + "x" * 4000})
    assert cert.deploy_command.startswith("echo x")


def latest_audit(action: str):
    from webapp.models import AuditEvent
    return db.session().query(AuditEvent).filter_by(action=action).order_by(AuditEvent.id.desc()).first()


def test_saving_deploy_settings_records_the_command_and_the_directory(ctx):
    cert = issued_locally()
    deploy.update_settings(cert, {"deploy_dir": "/etc/ssl/site", "deploy_command": "systemctl reload nginx"})
    event = latest_audit("deploy settings saved")
    assert "command: `systemctl reload nginx`" in event.summary
    assert "directory: `/etc/ssl/site`" in event.summary and "probe: none" in event.summary


def test_every_deploy_run_records_the_command_its_exit_status_and_duration(ctx, tmp_path):
    cert = issued_locally(deploy_command="sh -c 'sleep 0.3; exit 3'", deploy_dir=str(tmp_path))
    deploy.run(cert)
    event = latest_audit("deploy command run")
    assert event.object_id == str(cert.id) and "`sh -c 'sleep 0.3; exit 3'`" in event.summary
    assert f"in {tmp_path}: exit status 3 after 0." in event.summary
    seconds = float(event.summary.rsplit(" after ", 1)[1].removesuffix(" s"))
    assert 0.3 <= seconds < 5
    cert.deploy_command = "/nonexistent/reload-it"
    deploy.run(cert)
    assert "did not start (No such file or directory)" in latest_audit("deploy command run").summary


# -- end to end, with certificates from the lab CA ------------------------------------------------

def test_issue_and_renewal_deploy_run_the_command_and_the_probe_sees_the_new_serial(lab_app, cnames, tmp_path):
    from tests.services.test_issuance import new_cert
    out, marker = tmp_path / "deploy", tmp_path / "reloaded"
    with tls_server(lambda: (out / "fullchain.pem", out / "privkey.pem")) as (port, names), lab_app.app_context():
        cert = new_cert("customer.test *.customer.test")
        deploy.update_settings(cert, {"deploy_dir": str(out), "deploy_command": f"touch {marker}",
                                      "deploy_probe": f"127.0.0.1:{port}"})
        cnames(cert)
        assert pipeline.process(cert.id) == "active"
        cert = certificates.get(cert.id)
        assert cert.deploy_last_ok, cert.deploy_last_message
        assert f"serves serial {cert.serial} for customer.test" in cert.deploy_last_message
        assert marker.exists() and stat.S_IMODE(os.stat(out / "privkey.pem").st_mode) == 0o600
        assert deploy.served_serial("127.0.0.1", port, "customer.test") == cert.serial
        first = cert.serial
        marker.unlink()
        assert pipeline.renew(cert.id, reason="test") == "active"
        cert = certificates.get(cert.id)
        assert cert.serial != first and cert.deploy_last_ok and marker.exists()
        assert f"serves serial {cert.serial}" in cert.deploy_last_message
    assert set(names) == {"customer.test"}


def test_a_failing_deploy_never_fails_the_issuance(lab_app, cnames):
    from tests.services.test_issuance import new_cert
    with lab_app.app_context():
        cert = new_cert("customer.test")
        deploy.update_settings(cert, {"deploy_command": "sh -c 'exit 7'"})
        cnames(cert)
        assert pipeline.process(cert.id) == "active"
        cert = certificates.get(cert.id)
        assert cert.deploy_last_ok is False and "exited with status 7" in cert.deploy_last_message
        assert any(e.message.startswith("deploy: ") and e.level == "error" for e in certificates.timeline(cert))
