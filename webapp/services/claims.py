"""One holder at a time, in the database, on any number of nodes: leases for named jobs (one
process dispatches the scheduler's tick, one sweeps...) and claims on certificates (one
process, and one thread in it, works on a certificate). Both end by themselves when their
holder stops renewing them (it died): a lease when its time runs out, a claim 90 seconds
after its holder's heartbeat stopped. The scheduler's claims also keep the per-CA bound across
the cluster (claim_within): live claims are what is in flight at each CA."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import db
from ..models import CAProfile, Certificate, Lease, utcnow

log = logging.getLogger("sslmanager.claims")
HOLDER = f"{socket.gethostname()}:{os.getpid()}"  # this process; a claim's holder adds the thread
CLAIM_SECONDS = 90      # a dead holder's claim ends this long after its last heartbeat
HEARTBEAT_SECONDS = 30  # a live holder renews its claims this often


# -- leases: one holder for a named job ---------------------------------------------------------

def take_lease(name: str, seconds: float, holder: str = HOLDER) -> bool:
    """Take or extend the lease `name` for `seconds`; False while another live holder has it."""
    s = db.session()
    now = utcnow()
    result = s.execute(update(Lease).where(Lease.name == name,
                                           or_(Lease.until.is_(None), Lease.until < now, Lease.holder == holder))
                       .values(holder=holder, until=now + timedelta(seconds=seconds), last_run_at=now)
                       .execution_options(synchronize_session=False))
    if result.rowcount == 1:
        s.commit()
        return True
    s.rollback()
    if s.get(Lease, name) is not None:
        return False
    try:  # first use of this lease anywhere: the primary key lets exactly one insert win
        s.add(Lease(name=name, holder=holder, until=now + timedelta(seconds=seconds), last_run_at=now))
        s.commit()
        return True
    except IntegrityError:
        s.rollback()
        return False


def end_lease(name: str, holder: str = HOLDER) -> None:
    db.session().execute(update(Lease).where(Lease.name == name, Lease.holder == holder)
                         .values(until=None).execution_options(synchronize_session=False))
    db.session().commit()


def lease_last_run(name: str):
    lease = db.session().get(Lease, name)
    return lease.last_run_at if lease else None


# -- claims: one worker on a certificate ---------------------------------------------------------


def current_holder() -> str:
    """Who is working: this process and thread (two threads of one process never share a
    certificate either)."""
    return f"{HOLDER}:{threading.get_ident()}"


def claim(cert_id: int, holder: str | None = None, seconds: int = CLAIM_SECONDS) -> bool:
    """Take the certificate for this thread, so one worker at a time works on it; the claim is
    renewed by a heartbeat while held and ends `seconds` after the last one if the holder dies.
    PostgreSQL: a row lock with SKIP LOCKED (a busy row is skipped, not waited for); SQLite:
    the same atomic conditional update without the lock."""
    holder = holder or current_holder()
    s = db.session()
    now = utcnow()
    free = or_(Certificate.claimed_until.is_(None), Certificate.claimed_until < now,
               Certificate.claimed_by == holder)
    if s.get_bind(Certificate).dialect.name == "postgresql":
        locked = s.execute(select(Certificate.id).where(Certificate.id == cert_id, free)
                           .with_for_update(skip_locked=True)).first()
        if locked is None:
            s.rollback()
            return False
    result = s.execute(update(Certificate).where(Certificate.id == cert_id, free)
                       .values(claimed_by=holder, claimed_until=now + timedelta(seconds=seconds))
                       .execution_options(synchronize_session=False))
    s.commit()
    if result.rowcount == 1:
        _heartbeat().hold(cert_id, holder, seconds)
    return result.rowcount == 1


def unclaimed(now=None):
    """No live claim on the certificate (SQL condition): what the "due" queries hand out, so a
    node never picks what another node works on."""
    now = now or utcnow()
    return or_(Certificate.claimed_until.is_(None), Certificate.claimed_until < now)


def live_claims(profile_id: int, now=None):
    """Certificates of the CA profile someone holds a live claim on (SQL expression: count)."""
    now = now or utcnow()
    return (select(func.count()).select_from(Certificate)
            .where(Certificate.profile_id == profile_id, Certificate.claimed_until.is_not(None),
                   Certificate.claimed_until >= now).scalar_subquery())


def claim_within(cert_id: int, profile_id: int, bound: int, holder: str,
                 seconds: int = CLAIM_SECONDS, still=None) -> str:
    """The scheduler's claim, within the per-CA bound across every process and node: at most
    `bound` certificates of the profile claimed at once, whoever holds them. "claimed", "full"
    (the profile has `bound` live claims) or "busy" (someone else holds this certificate).
    The count and the claim are one UPDATE; on PostgreSQL the profile's row is locked first
    (two claimers of one CA take turns, so both cannot see bound - 1 and pass), on SQLite the
    single writer does the same. `still(now)`: the SQL condition the certificate must still
    meet (still due: another node may have done it since the caller's list was read); "busy"
    when it no longer does."""
    s = db.session()
    now = utcnow()
    if s.get_bind(Certificate).dialect.name == "postgresql":
        s.execute(select(CAProfile.id).where(CAProfile.id == profile_id).with_for_update(key_share=True))
    if s.execute(select(live_claims(profile_id, now))).scalar_one() >= bound:
        s.rollback()
        return "full"
    free = or_(Certificate.claimed_until.is_(None), Certificate.claimed_until < now,
               Certificate.claimed_by == holder)
    result = s.execute(update(Certificate)
                       .where(Certificate.id == cert_id, free, live_claims(profile_id, now) < bound,
                              *([still(now)] if still is not None else []))
                       .values(claimed_by=holder, claimed_until=now + timedelta(seconds=seconds))
                       .execution_options(synchronize_session=False))
    s.commit()
    if result.rowcount != 1:
        return "busy"
    _heartbeat().hold(cert_id, holder, seconds)
    return "claimed"


def release(cert_id: int, holder: str | None = None) -> None:
    holder = holder or current_holder()
    _heartbeat().drop(cert_id, holder)
    db.session().execute(update(Certificate).where(Certificate.id == cert_id, Certificate.claimed_by == holder)
                         .values(claimed_by="", claimed_until=None)
                         .execution_options(synchronize_session=False))
    db.session().commit()


class _Heartbeat:
    """Renews this app's held claims every HEARTBEAT_SECONDS from one thread (started with the
    first claim, gone with the last), straight on the engine: no session, no app context."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.held: dict[tuple[int, str], int] = {}  # (certificate id, holder) -> claim seconds
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    def hold(self, cert_id: int, holder: str, seconds: int) -> None:
        with self.lock:
            if self.pid != os.getpid():  # a forked child (gunicorn): the parent's thread is not here
                self.held, self.thread, self.pid = {}, None, os.getpid()
            self.held[(cert_id, holder)] = seconds
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="sslm-claims", daemon=True)
                self.thread.start()

    def drop(self, cert_id: int, holder: str) -> None:
        with self.lock:
            self.held.pop((cert_id, holder), None)

    def _run(self) -> None:
        table = Certificate.__table__
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with self.lock:
                if not self.held:
                    self.thread = None
                    return
                held = dict(self.held)
            try:
                now = utcnow()
                with self.engine.begin() as conn:
                    for (cert_id, holder), seconds in held.items():
                        conn.execute(update(table).where(table.c.id == cert_id, table.c.claimed_by == holder)
                                     .values(claimed_until=now + timedelta(seconds=seconds)))
            except Exception:  # a busy or unreachable database: the next beat tries again
                log.warning("could not renew %d certificate claims", len(held), exc_info=True)


def _heartbeat() -> _Heartbeat:
    state = current_app.extensions["sslmanager"]
    return state.extra.get("claims") or state.extra.setdefault("claims", _Heartbeat(state.engine))
