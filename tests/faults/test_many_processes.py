"""Several processes, each with its scheduler running, on one database: 30 due certificates,
each ordered from the CA exactly once (counted at the proxy), each issued once."""
from __future__ import annotations

from collections import Counter


from tests.conftest import make_app, run_scheduler_processes
from tests.faults.conftest import lab_setup, new_cert
from webapp import db
from webapp.models import CertificateVersion
from webapp.services import certificates

COUNT = 30
PROCESSES = 3

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
    run_scheduler_processes(str(tmp_path / "instance"), shared_db_url, resolver, processes=PROCESSES)
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
