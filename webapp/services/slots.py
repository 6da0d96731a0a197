"""The per-CA bound of one process: certificates worked on at once per CA profile. The
scheduler's tick, the jobs handed to the service (`cert process`) and the pages' buttons share
it, so none of them can push a CA past SSLMANAGER_CONCURRENCY_PER_CA while the others run;
and per_ca, which works on many certificates a few at a time per CA profile."""
from __future__ import annotations

import contextvars
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager

from .. import db
from ..models import Certificate

log = logging.getLogger("sslmanager.slots")


class SlotsBusy(Exception):
    """Every slot of the CA stayed taken for as long as the caller could wait."""


class CaSlots:
    """Certificates being worked on per CA profile in this process, at most `per_ca` each: the
    scheduler takes a slot when one is free (`try_take`), work handed to the service waits for
    one (`held`), so neither can push a CA past the bound while the other runs."""

    def __init__(self, per_ca: int):
        self.per_ca = max(1, per_ca)
        self._busy: Counter[int] = Counter()
        self._free = threading.Condition()

    def try_take(self, profile_id: int) -> bool:
        with self._free:
            if self._busy[profile_id] >= self.per_ca:
                return False
            self._busy[profile_id] += 1
            return True

    def give(self, profile_id: int) -> None:
        with self._free:
            self._busy[profile_id] -= 1
            self._free.notify_all()

    @contextmanager
    def held(self, profile_id: int, timeout: float | None = None) -> Iterator[None]:
        """A slot for the duration of the block, waited for up to `timeout` seconds (SlotsBusy)."""
        with self._free:
            if not self._free.wait_for(lambda: self._busy[profile_id] < self.per_ca, timeout):
                raise SlotsBusy(profile_id)
            self._busy[profile_id] += 1
        try:
            yield
        finally:
            self.give(profile_id)


def ca_slots(app) -> CaSlots:
    """The app's CaSlots (SSLMANAGER_CONCURRENCY_PER_CA), made on first use."""
    extra = app.extensions["sslmanager"].extra
    if "ca_slots" not in extra:
        extra.setdefault("ca_slots", CaSlots(app.config["SSLMANAGER_CONCURRENCY_PER_CA"]))
    return extra["ca_slots"]


Done = Callable[[int, str, list[str], str], None]


def per_ca(app, cert_ids: list[int], work: Callable[[int], str], *, limit: int,
           done: Done | None = None) -> dict[int, str]:
    """Run `work(id)` (in an app context; it returns the certificate's status) for each
    certificate, at most `limit` at once per CA profile: one pool per profile, so a slow CA
    never holds up another's. `done(id, status, domains, last_error)` is called in this thread
    as each finishes. Returns id -> status ("missing" for an unknown ID, "error" for a crash)."""
    with app.app_context():
        profiles = dict(db.session().query(Certificate.id, Certificate.profile_id)
                        .filter(Certificate.id.in_(cert_ids)).all()) if cert_ids else {}
        db.session().remove()

    def one(cert_id: int) -> tuple[str, list[str], str]:
        with app.app_context():
            try:
                status = work(cert_id)
                cert = db.session().get(Certificate, cert_id)
                return status, list(cert.domains), cert.last_error or ""
            except Exception as exc:  # one certificate's bug never stops the others
                log.exception("certificate %s: crashed", cert_id)
                return "error", [], f"{type(exc).__name__}: {exc}"
            finally:
                db.session().remove()

    results: dict[int, str] = {}
    for cert_id in cert_ids:
        if cert_id not in profiles:
            results[cert_id] = "missing"
            if done:
                done(cert_id, "missing", [], "no such certificate")
    pools = {pid: ThreadPoolExecutor(max(1, limit), thread_name_prefix=f"sslm-ca{pid}")
             for pid in set(profiles.values())}
    try:
        # Each in a copy of the caller's context: who started the work (audit.acting_as).
        futures = {pools[profiles[cid]].submit(contextvars.copy_context().run, one, cid): cid
                   for cid in cert_ids if cid in profiles}
        for future in as_completed(futures):
            status, domains, error = future.result()
            results[futures[future]] = status
            if done:
                done(futures[future], status, domains, error)
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
    return results
