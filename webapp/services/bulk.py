"""Work on many certificates from one process, a few at a time per CA profile: what `sslmanager
renew` and `sslmanager cert process ID...` do; and CaSlots, the per-CA bound a service's
scheduler shares with the jobs handed to it."""
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

log = logging.getLogger("sslmanager.bulk")

Done = Callable[[int, str, list[str], str], None]


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


def process_and_report(app, cert_ids: list[int], wait: float, concurrency: int | None, *,
                       out: Callable[[str], None], err: Callable[[str], None],
                       shared: bool = False) -> int:
    """`sslmanager cert process ID...`, in the command's process or in the service it hands the
    job to: the work and the lines it prints. Returns the exit code (0 when all are Active).
    `shared` (the service): each pass over a certificate holds one of the app's CaSlots, the
    ones its scheduler uses."""
    from ..errors import SSLManagerError, describe
    from . import certificates
    hold = ca_slots(app).held if shared else None
    if len(cert_ids) == 1:
        with app.app_context():
            try:
                cert = certificates.process_now(cert_ids[0], wait, hold=hold, say=out)
                out(f"Certificate {cert.id}: {cert.status}")
                if cert.last_error:
                    err(f"  {cert.last_error}")
                    if cert.last_error_hint:
                        err(f"  hint: {cert.last_error_hint}")
                return 0 if cert.status == "active" else 1
            except SSLManagerError as exc:
                for line in describe(exc):
                    err(line)
                return 1
            finally:
                db.session().remove()
    active = 0

    def done(cert_id: int, status: str, domains: list[str], error: str) -> None:
        nonlocal active
        active += status == "active"
        label = f"Certificate {cert_id}" + (f" ({', '.join(domains)})" if domains else "")
        out(f"{label}: {status}" + (f": {error}" if error and status != "active" else ""))

    with app.app_context():
        db.session().remove()  # the pool's threads open their own sessions
    per_ca(app, cert_ids,
           lambda cert_id: certificates.process_now(cert_id, wait, hold=hold, say=out).status,
           limit=concurrency or app.config["SSLMANAGER_CONCURRENCY_PER_CA"], done=done)
    out(f"{active} of {len(cert_ids)} Active.")
    return 0 if active == len(cert_ids) else 1
