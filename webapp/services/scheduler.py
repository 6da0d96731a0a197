"""The in-process scheduler (APScheduler 3). Jobs are one-line wrappers that open an app
context and call a service; certificates run in a bounded pool, a few at a time per CA."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from .. import db
from ..models import Certificate, utcnow

log = logging.getLogger("sslmanager.scheduler")


class Scheduler:
    """One BackgroundScheduler per app, plus the pool that works on certificates."""

    def __init__(self, app: Flask):
        self.app = app
        self._scheduler = BackgroundScheduler(timezone="UTC")
        per_ca = app.config["SSLMANAGER_CONCURRENCY_PER_CA"]
        self._pool = ThreadPoolExecutor(max_workers=max(4, per_ca * 4), thread_name_prefix="sslm-work")
        self._per_ca = per_ca
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}   # certificate id -> profile id
        self.last_run = None

    def start(self) -> None:
        self._scheduler.add_job(self.tick, "interval", seconds=5, id="sslm-tick",
                                max_instances=1, coalesce=True, next_run_time=utcnow())
        self._scheduler.start()

    def shutdown(self) -> None:
        self._scheduler.shutdown(wait=False)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def state_name(self) -> str:
        return {0: "stopped", 1: "running", 2: "paused"}.get(self._scheduler.state, "unknown")

    def tick(self) -> int:
        """Hand every due certificate to the pool, at most `per CA` in flight per profile."""
        from . import certificates
        with self.app.app_context():
            self.last_run = utcnow()
            due = certificates.due_for_processing()
            profiles = dict(db.session().query(Certificate.id, Certificate.profile_id)
                            .filter(Certificate.id.in_(due)).all()) if due else {}
            db.session().remove()
        started = 0
        with self._lock:
            for cert_id in due:
                profile_id = profiles.get(cert_id)
                busy = sum(1 for p in self._in_flight.values() if p == profile_id)
                if cert_id in self._in_flight or busy >= self._per_ca:
                    continue
                self._in_flight[cert_id] = profile_id
                self._pool.submit(self._work, cert_id)
                started += 1
        return started

    def _work(self, cert_id: int) -> None:
        from . import certificates
        try:
            with self.app.app_context():
                certificates.process(cert_id)
                db.session().remove()
        except Exception:  # one certificate's bug never stops the others
            log.exception("certificate %s: processing crashed", cert_id)
        finally:
            with self._lock:
                self._in_flight.pop(cert_id, None)
        # A slot freed: look again now rather than at the next tick.
        self.tick()


def start(app: Flask) -> Scheduler:
    """Start the app's scheduler (once)."""
    state = app.extensions["sslmanager"]
    if state.scheduler is None:
        state.scheduler = Scheduler(app)
        state.scheduler.start()
    return state.scheduler
