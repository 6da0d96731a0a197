"""Several processes, each with its scheduler running, on one database: 30 due certificates,
each ordered from the CA exactly once (counted at the proxy), each issued once."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from tests.conftest import make_app
from tests.faults.conftest import lab_setup, new_cert, subprocess_env
from webapp import db
from webapp.models import CertificateVersion
from webapp.services import certificates

COUNT = 30
PROCESSES = 3

WORKER = """
import sys, time
from webapp import create_app, db
from webapp.services import certificates, scheduler
app = create_app({"SSLMANAGER_INSTANCE_PATH": sys.argv[1], "SSLMANAGER_DATABASE_URL": sys.argv[2],
                  "SSLMANAGER_DNS_RESOLVERS": [sys.argv[3]], "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES": True})
sched = scheduler.start(app)  # what `sslmanager run` does: ticks every few seconds, DB lease
deadline = time.monotonic() + float(sys.argv[4])
while time.monotonic() < deadline:
    time.sleep(0.2)
    with app.app_context():
        due = certificates.due_for_processing()
        db.session().remove()
    if not due and sched.wait_idle(0.1):
        break
sched.shutdown()
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/shared.db"
    return request.getfixturevalue("pg_database")


def test_processes_with_schedulers_order_each_of_thirty_due_certificates_once(
        tmp_path, shared_db_url, lab_bind, lab_unbound, lab_pebble, proxy, cnames):
    resolver = f"127.0.0.1:{lab_unbound.port}"
    app = make_app(tmp_path, SSLMANAGER_DATABASE_URL=shared_db_url)
    lab_setup(app, lab_bind, lab_unbound, lab_pebble, proxy)
    names = [f"sched{i}.customer.test" for i in range(COUNT)]
    with app.app_context():
        ids = []
        for name in names:  # Pending and due now: the schedulers check the CNAME, then order
            cert = new_cert(name)
            cnames(cert)
            ids.append(cert.id)
        db.session().remove()
        app.extensions["sslmanager"].engine.dispose()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "instance"), shared_db_url,
                               resolver, "90"], env=subprocess_env()) for _ in range(PROCESSES)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    with app.app_context():
        statuses = {i: (certificates.get(i).status, certificates.get(i).last_error) for i in ids}
        versions = Counter(v for (v,) in db.session().query(CertificateVersion.certificate_id)
                           .filter(CertificateVersion.certificate_id.in_(ids)))
        db.session().remove()
        app.extensions["sslmanager"].engine.dispose()
    assert all(status == "active" for status, _ in statuses.values()), statuses
    assert versions == Counter(ids)  # one version each
    assert proxy.ordered_names() == Counter(names)  # one order each
    assert proxy.new_orders() == COUNT
