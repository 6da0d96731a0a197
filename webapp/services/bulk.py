"""Work on many certificates from one process, a few at a time per CA profile: what `sslmanager
renew` and `sslmanager cert process ID...` do (in the command, or in the service it hands the
job to)."""
from __future__ import annotations

from collections.abc import Callable

from .. import db
from ..errors import SSLManagerError, describe
from . import pipeline
from .slots import Done, ca_slots, per_ca


def process_and_report(app, cert_ids: list[int], wait: float, concurrency: int | None, *,
                       out: Callable[[str], None], err: Callable[[str], None],
                       shared: bool = False) -> int:
    """`sslmanager cert process ID...`, in the command's process or in the service it hands the
    job to: the work and the lines it prints. Returns the exit code (0 when all are Active).
    `shared` (the service): each pass over a certificate holds one of the app's CaSlots, the
    ones its scheduler uses."""
    hold = ca_slots(app).held if shared else None
    if len(cert_ids) == 1:
        with app.app_context():
            try:
                cert = pipeline.process_now(cert_ids[0], wait, hold=hold, say=out)
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
           lambda cert_id: pipeline.process_now(cert_id, wait, hold=hold, say=out).status,
           limit=concurrency or app.config["SSLMANAGER_CONCURRENCY_PER_CA"], done=done)
    out(f"{active} of {len(cert_ids)} Active.")
    return 0 if active == len(cert_ids) else 1


def renew_many(app, cert_ids: list[int], *, limit: int, reason: str = "requested",
               done: Done | None = None) -> dict[int, str]:
    """Renew these certificates now, at most `limit` orders in flight per CA profile
    (`done(id, status, domains, last_error)` as each finishes)."""
    return per_ca(app, cert_ids, lambda cert_id: pipeline.renew(cert_id, reason=reason),
                  limit=limit, done=done)
