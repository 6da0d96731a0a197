"""Work on many certificates from one process, a few at a time per CA profile: what `sslmanager
renew` and `sslmanager cert process ID...` do (the scheduler bounds its own pool the same way)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

from .. import db
from ..models import Certificate

log = logging.getLogger("sslmanager.bulk")

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
        futures = {pools[profiles[cid]].submit(one, cid): cid for cid in cert_ids if cid in profiles}
        for future in as_completed(futures):
            status, domains, error = future.result()
            results[futures[future]] = status
            if done:
                done(futures[future], status, domains, error)
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
    return results
