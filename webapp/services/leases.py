"""Leases in the database: one holder at a time for a named job, on any number of nodes;
a lease ends by itself when its holder stops renewing it (it died)."""
from __future__ import annotations

import os
import socket
from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from .. import db
from ..models import Lease, utcnow

HOLDER = f"{socket.gethostname()}:{os.getpid()}"


def acquire(name: str, seconds: float, holder: str = HOLDER) -> bool:
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


def release(name: str, holder: str = HOLDER) -> None:
    db.session().execute(update(Lease).where(Lease.name == name, Lease.holder == holder)
                         .values(until=None).execution_options(synchronize_session=False))
    db.session().commit()


def last_run(name: str):
    lease = db.session().get(Lease, name)
    return lease.last_run_at if lease else None
