"""The README's in-process renewals for a panel: `scheduler.start(app)` after `init_app` ticks
on the panel's database (the worker command is the other way, tested in tests/cli)."""
from __future__ import annotations

import time

from webapp.services import scheduler


def test_the_scheduler_started_by_the_panel_runs_on_its_database(host):
    host.config["SSLMANAGER_HEALTHZ_DETAILS"] = True  # the scheduler's last run, without signing in
    sched = scheduler.start(host)
    try:
        client = host.test_client()
        deadline = time.monotonic() + 20
        while client.get("/panel/ssl/healthz").get_json()["scheduler_last_run"] is None:
            assert time.monotonic() < deadline, "the scheduler never ticked"
            time.sleep(0.1)
        assert client.get("/panel/ssl/healthz").get_json()["scheduler"] == "running"
    finally:
        sched.shutdown()
