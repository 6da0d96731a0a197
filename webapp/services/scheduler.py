"""The in-process scheduler (APScheduler 3). Jobs are one-line wrappers that open an app
context and call a service; certificates run in a bounded pool, a few at a time per CA across
every node (each node's tick claims its share: see tick)."""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from .. import db
from ..config import sweep_interval
from ..models import Certificate, utcnow
from . import claims, delegation, dns_manager, notifications, pipeline, renewals
from .audit import SCHEDULER, acting_as
from .slots import ca_slots

log = logging.getLogger("sslmanager.scheduler")
TICK_SECONDS = 5
LEASE_SECONDS = 30  # a dead holder's lease ends after this; then another process takes it


# What each kind of work must still be when it is claimed (the list was read moments before).
STILL_DUE = {"process": pipeline.processing_due_clause, "renew": renewals.due_clause,
             "ari": renewals.ari_due_clause}


class Scheduler:
    """One BackgroundScheduler per app, plus the pool that works on certificates."""

    def __init__(self, app: Flask):
        self.app = app
        self._scheduler = BackgroundScheduler(timezone="UTC")
        per_ca = app.config["SSLMANAGER_CONCURRENCY_PER_CA"]
        self._pool = ThreadPoolExecutor(max_workers=max(4, per_ca * 4), thread_name_prefix="sslm-work")
        self._slots = ca_slots(app)  # shared with `cert process` jobs handed to this process
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}   # certificate id -> profile id
        self.last_run = None
        self.sweep_seconds = sweep_interval(app.config)  # a bad value stops the start, named

    def start(self) -> None:
        self._scheduler.add_job(self.tick, "interval", seconds=TICK_SECONDS, id="sslm-tick",
                                max_instances=1, coalesce=True, next_run_time=utcnow())
        self._scheduler.add_job(self.dns_sweep, "interval", seconds=self.sweep_seconds,
                                id="sslm-dns-sweep", max_instances=1, coalesce=True)
        self._scheduler.add_job(self.delegation_watch, "interval", hours=24, id="sslm-delegation-watch",
                                max_instances=1, coalesce=True)
        self._scheduler.add_job(self.notify_scan, "interval", hours=1, id="sslm-notify-scan",
                                max_instances=1, coalesce=True, next_run_time=utcnow())
        with self.app.app_context():
            sqlite = self.app.extensions["sslmanager"].engine.dialect.name == "sqlite"
        if sqlite:  # PostgreSQL's autovacuum keeps its statistics by itself
            self._scheduler.add_job(self.statistics, "interval", hours=1, id="sslm-statistics",
                                    max_instances=1, coalesce=True, next_run_time=utcnow())
        self._scheduler.start()

    def dns_sweep(self) -> None:
        """Remove TXT values no live order needs (one node does it)."""
        # Held for two thirds of the interval: one node sweeps each time, and whichever node's
        # job fires first next time may take it (a dead holder never stops the sweeps).
        with self.app.app_context(), acting_as(SCHEDULER):
            try:
                if claims.take_lease("dns-sweep", seconds=max(30, self.sweep_seconds * 2 // 3)):
                    dns_manager.sweep()
            finally:
                db.session().remove()

    def delegation_watch(self) -> None:
        """Re-check the CNAMEs of Active auto-renewing certificates (one node, daily)."""
        with self.app.app_context(), acting_as(SCHEDULER):
            try:
                if claims.take_lease("delegation-watch", seconds=20 * 3600):
                    delegation.delegation_watch()
            finally:
                db.session().remove()

    def notify_scan(self) -> None:
        """Expiring, still-failing, broken-delegation and failing-profile notices (one node, hourly)."""
        with self.app.app_context(), acting_as(SCHEDULER):
            try:
                if claims.take_lease("notify-scan", seconds=50 * 60):
                    notifications.scan()
            finally:
                db.session().remove()

    def statistics(self) -> None:
        """SQLite's planner statistics, refreshed (one process, hourly; see db.refresh_statistics)."""
        with self.app.app_context():
            try:
                if claims.take_lease("statistics", seconds=50 * 60):
                    db.refresh_statistics()
            finally:
                db.session().remove()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def state_name(self) -> str:
        return {0: "stopped", 1: "running", 2: "paused"}.get(self._scheduler.state, "unknown")

    def tick(self) -> int:
        """Hand due certificates (new ones and renewals) to this process's pool. Every process
        on every node ticks: each takes what no one holds, claimed here within the per-CA bound
        across the cluster (claims.claim_within: at most SSLMANAGER_CONCURRENCY_PER_CA claimed
        per CA profile, whoever holds them) and within its own slots. The dispatch lease picks
        one process for the housekeeping (marking expired certificates). Returns how many
        started."""
        started = 0
        with self.app.app_context(), acting_as(SCHEDULER):
            try:
                if claims.take_lease("dispatch", seconds=LEASE_SECONDS):
                    self.last_run = utcnow()
                    renewals.expire()
                work = [(cid, "process") for cid in pipeline.due_for_processing()]
                work += [(cid, "renew") for cid in renewals.due()]
                busy = {cid for cid, _ in work}
                work += [(cid, "ari") for cid in renewals.ari_due() if cid not in busy]
                ids = [cid for cid, _ in work]
                profiles = dict(db.session().query(Certificate.id, Certificate.profile_id)
                                .filter(Certificate.id.in_(ids)).all()) if ids else {}
                db.session().commit()
                full: set[int] = set()  # profiles at their bound: no more claims tried this tick
                for cert_id, kind in work:
                    profile_id = profiles.get(cert_id)
                    if profile_id is None or profile_id in full:
                        continue
                    with self._lock:
                        if cert_id in self._in_flight or not self._slots.try_take(profile_id):
                            continue
                        self._in_flight[cert_id] = profile_id
                    holder = f"{claims.HOLDER}:tick:{cert_id}"
                    taken = claims.claim_within(cert_id, profile_id, self._slots.per_ca, holder,
                                                still=STILL_DUE[kind])
                    if taken != "claimed":
                        if taken == "full":
                            full.add(profile_id)
                        self._done(cert_id)
                        continue
                    try:
                        self._pool.submit(self._work, cert_id, kind, holder)
                    except RuntimeError:  # shutting down: give the claim and the slot back
                        claims.release(cert_id, holder)
                        self._done(cert_id)
                        raise
                    started += 1
            finally:
                db.session().remove()
        return started

    def _done(self, cert_id: int) -> None:
        with self._lock:
            self._slots.give(self._in_flight.pop(cert_id))

    def _work(self, cert_id: int, kind: str, holder: str) -> None:
        try:
            with self.app.app_context(), acting_as(SCHEDULER):
                try:
                    if kind == "renew":
                        pipeline.renew(cert_id, holder=holder)
                    elif kind == "ari":
                        renewals.poll_ari(cert_id, holder)
                    else:
                        pipeline.process(cert_id, holder)
                finally:
                    db.session().rollback()
                    claims.release(cert_id, holder)  # also after a crash: the CA's slot is free
                    db.session().remove()
        except Exception:  # one certificate's bug never stops the others
            log.exception("certificate %s: %s crashed", cert_id, kind)
        finally:
            self._done(cert_id)
        # A slot freed: look again now rather than at the next tick.
        try:
            self.tick()
        except RuntimeError:  # the pool is shutting down
            pass

    def wait_idle(self, timeout: float) -> bool:
        """For the CLI and tests: wait until nothing is in flight."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if not self._in_flight:
                    return True
            time.sleep(0.05)
        return False


def start(app: Flask) -> Scheduler:
    """Start the app's scheduler (once)."""
    state = app.extensions["sslmanager"]
    if state.scheduler is None:
        state.scheduler = Scheduler(app)
        state.scheduler.start()
    return state.scheduler
