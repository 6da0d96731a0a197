"""The scheduler's settings: the sweep interval drives the sweep job and is validated."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import make_app
from webapp.errors import ConfigError
from webapp.services import scheduler


def test_the_sweep_job_runs_every_sweep_interval_seconds(app):
    app.config["SSLMANAGER_SWEEP_INTERVAL"] = 120
    sched = scheduler.Scheduler(app)
    sched.start()
    try:
        assert sched._scheduler.get_job("sslm-dns-sweep").trigger.interval == timedelta(seconds=120)
    finally:
        sched.shutdown()


def test_the_default_sweep_interval_is_fifteen_minutes(app):
    sched = scheduler.Scheduler(app)
    try:
        assert sched.sweep_seconds == 900
    finally:
        sched.shutdown()


@pytest.mark.parametrize("value", ["soon", 10, 86401, "", True, 1.5])
def test_a_bad_sweep_interval_stops_the_scheduler_naming_the_setting(app, value):
    app.config["SSLMANAGER_SWEEP_INTERVAL"] = value
    with pytest.raises(ConfigError) as info:
        scheduler.Scheduler(app)
    assert "SSLMANAGER_SWEEP_INTERVAL" in info.value.message and "60 to 86400" in info.value.message


def test_the_sweep_interval_comes_from_the_environment_and_a_bad_one_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLMANAGER_SWEEP_INTERVAL", "300")
    assert make_app(tmp_path / "a").config["SSLMANAGER_SWEEP_INTERVAL"] == 300
    monkeypatch.setenv("SSLMANAGER_SWEEP_INTERVAL", "every hour")
    with pytest.raises(ConfigError) as info:
        make_app(tmp_path / "b")
    assert "SSLMANAGER_SWEEP_INTERVAL" in info.value.message and "every hour" in info.value.message


def test_work_the_scheduler_starts_is_audited_as_the_scheduler(lab_app, cnames):
    from webapp import db
    from webapp.models import AuditEvent
    from webapp.services import ca_profiles, certificates
    with lab_app.app_context():
        cert = certificates.create({"profile_id": ca_profiles.by_name("Pebble").id,
                                    "domains": "scheduled.customer.test"})
        certificates.request(cert)
        cnames(cert)
        cert_id = cert.id
    sched = scheduler.Scheduler(lab_app)
    try:
        assert sched.tick() == 1
        assert sched.wait_idle(60)
    finally:
        sched.shutdown()
    with lab_app.app_context():
        assert certificates.get(cert_id).status == "active"
        issued = db.session().query(AuditEvent).filter_by(action="certificate issued").one()
        assert (issued.object_id, issued.actor) == (str(cert_id), "scheduler")
