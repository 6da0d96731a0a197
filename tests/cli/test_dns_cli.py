"""`sslmanager dns sweep` against the lab's real BIND: what it removes, and who it says did it."""
from __future__ import annotations

from tests.lab.servers import TECH_ZONE
from tests.services.test_dns_manager import dns_app, new_cert, remember, target  # noqa: F401
from webapp import db
from webapp.models import AuditEvent
from webapp.services import audit, scheduler, zones


def test_dns_sweep_removes_orphan_values_now_and_says_so(dns_app, lab_bind, names):  # noqa: F811
    runner = dns_app.test_cli_runner()
    with dns_app.app_context():
        done = new_cert(names("customer.test"), status="active")
        name, done_id = target(done), done.id
        zones.provider_for(TECH_ZONE).add_txt([(name, "orphan-1")], 30)
        remember(done, name, "orphan-1")
    result = runner.invoke(args=["sslmanager", "dns", "sweep"])
    assert result.exit_code == 0, result.output
    assert f'removed {name} TXT "orphan-1"' in result.output and f"certificates: {done_id}" in result.output
    assert lab_bind.txt(name) == []
    result = runner.invoke(args=["sslmanager", "dns", "sweep"])
    assert result.exit_code == 0 and result.output.strip() == "nothing to remove"
    with dns_app.app_context():
        event = db.session().query(AuditEvent).filter_by(action="DNS sweep").one()
        assert event.actor == audit.cli_actor() and event.actor.startswith("cli:")


def test_the_scheduled_sweep_is_audited_as_the_scheduler(dns_app, lab_bind, names):  # noqa: F811
    with dns_app.app_context():
        done = new_cert(names("customer.test"), status="active")
        name = target(done)
        zones.provider_for(TECH_ZONE).add_txt([(name, "orphan-2")], 30)
        remember(done, name, "orphan-2")
    sched = scheduler.Scheduler(dns_app)
    try:
        sched.dns_sweep()
    finally:
        sched.shutdown()
    assert lab_bind.txt(name) == []
    with dns_app.app_context():
        assert [e.actor for e in db.session().query(AuditEvent).filter_by(action="DNS sweep")] == ["scheduler"]
