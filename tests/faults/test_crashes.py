"""A process killed with SIGKILL in the middle of an issuance (a real subprocess that kills
itself the moment the timeline reaches the step): the next run resumes the stored order with
the same key, one certificate comes out, and no TXT value is left in the technical zone."""
from __future__ import annotations

import signal

import pytest

from tests.conftest import make_app
from tests.faults.conftest import expire_claim, new_cert, run_python, txt_left
from webapp import db
from webapp.models import CertificateVersion, DnsRecord
from webapp.services import certificates, dns_manager, pipeline

KILLED_AT_STEP = """
import os, signal, sys
from webapp import create_app
from webapp.services import pipeline, timeline
instance, resolver, cert_id, kill_at = sys.argv[1:5]
write_line = timeline.Timeline.__call__

def write_then_die(self, line, level="info"):
    write_line(self, line, level)
    if line.startswith(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)  # no finally, no cleanup, no commit

timeline.Timeline.__call__ = write_then_die
app = create_app({"SSLMANAGER_INSTANCE_PATH": instance, "SSLMANAGER_DNS_RESOLVERS": [resolver],
                  "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES": True, "SSLMANAGER_SCHEDULER_ENABLED": False})
with app.app_context():
    pipeline.process(int(cert_id))
sys.exit(3)  # the step was never reached
"""


@pytest.mark.parametrize("kill_at, stored_step, run_cleans_up", [
    # The CA has the CSR; the TXT value is published and recorded: the resumed run only
    # downloads, and the sweeper removes the value (the order no longer needs it).
    ("finalize: POST", "finalizing", False),
    # The TXT value is in the zone but not yet recorded: the resumed run answers the same
    # challenge with the same value and removes it in its own cleanup.
    ("dns: 1 TXT value added", "order created", True),
], ids=["after-finalize", "after-txt-written"])
def test_a_process_killed_mid_issuance_is_resumed_with_one_order_and_the_same_key(
        tmp_path, proxied_app, proxy, lab_unbound, cnames, kill_at, stored_step, run_cleans_up):
    resolver = f"127.0.0.1:{lab_unbound.port}"
    with proxied_app.app_context():
        cert = new_cert(f"killed-{stored_step.split()[0]}.customer.test")
        cnames(cert)
        cert_id, key = cert.id, cert.private_key
        proxied_app.extensions["sslmanager"].engine.dispose()

    run = run_python(KILLED_AT_STEP, str(tmp_path / "instance"), resolver, str(cert_id), kill_at)
    assert run.returncode == -signal.SIGKILL, run.stdout + run.stderr

    restarted = make_app(tmp_path, SSLMANAGER_DNS_RESOLVERS=[resolver])
    with restarted.app_context():
        cert = certificates.get(cert_id)
        order_url = cert.order_url
        assert cert.status == "processing" and cert.step == stored_step and order_url
        assert pipeline.process(cert_id) == "busy"  # the dead process's claim still holds
        expire_claim(cert_id)
        assert pipeline.process(cert_id) == "active", certificates.get(cert_id).last_error
        cert = certificates.get(cert_id)
        version = db.session().query(CertificateVersion).filter_by(certificate_id=cert_id).one()
        assert version.order_url == order_url and version.private_key == key == cert.private_key
        assert any(e.message.startswith(f"resume order {order_url}") for e in certificates.timeline(cert))
        assert proxy.new_orders() == 1
        if run_cleans_up:
            assert txt_left(cert) == []

        dns_manager.sweep()
        assert txt_left(cert) == []
        assert db.session().query(DnsRecord).filter_by(certificate_id=cert_id).count() == 0
        restarted.extensions["sslmanager"].engine.dispose()
