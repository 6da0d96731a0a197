"""GET /metrics in the Prometheus text format (0.0.4): for signed-in admins, or without signing
in from the addresses in SSLMANAGER_METRICS_ALLOW (the umbrella's guard asks address_allowed).

Behind a reverse proxy the address is the proxy's unless the host app applies ProxyFix."""
from __future__ import annotations

import ipaddress
import logging

from flask import Blueprint, Response, current_app, request
from sqlalchemy import func, select

from .. import db
from ..models import Certificate, utcnow
from ..services import claims
from ..services.certificates import STATUSES

bp = Blueprint("metrics", __name__)
log = logging.getLogger("sslmanager.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def address_allowed() -> bool:
    """Whether the caller's address is in SSLMANAGER_METRICS_ALLOW (a list of CIDRs)."""
    allowed = current_app.config["SSLMANAGER_METRICS_ALLOW"] or []
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    address = getattr(address, "ipv4_mapped", None) or address
    for cidr in allowed:
        try:
            network = ipaddress.ip_network(str(cidr).strip(), strict=False)
        except ValueError:
            log.warning("SSLMANAGER_METRICS_ALLOW: %r is not a CIDR; ignored", cidr)
            continue
        if address.version == network.version and address in network:
            return True
    return False


def _label(value: object) -> str:
    """A label value, escaped as the exposition format wants (backslash, quote, newline)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _metric(out: list[str], name: str, kind: str, help_: str, samples: list[tuple[dict, float]]) -> None:
    out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        number = str(int(value)) if float(value).is_integer() else repr(float(value))
        out.append(f"{name}{{{text}}} {number}" if text else f"{name} {number}")


def render() -> str:
    """Every metric, as text."""
    s = db.session()
    now = utcnow()
    counts = dict(s.execute(select(Certificate.status, func.count()).group_by(Certificate.status)).all())
    rows = s.execute(select(Certificate.id, Certificate.common_name, Certificate.status,
                            Certificate.not_after, Certificate.failing_since, Certificate.deploy_last_ok)
                     .where(Certificate.not_after.is_not(None)).order_by(Certificate.id)).all()
    failing = [r for r in rows if r.failing_since is not None]
    last = claims.lease_last_run("dispatch")
    out: list[str] = []
    _metric(out, "sslmanager_certificates", "gauge", "Certificates by status.",
            [({"status": status}, counts.get(status, 0)) for status in STATUSES])
    _metric(out, "sslmanager_certificate_expiry_seconds", "gauge",
            "Seconds until the current version of each certificate expires (negative: expired).",
            [({"id": r.id, "common_name": r.common_name, "status": r.status},
              round((r.not_after - now).total_seconds())) for r in rows])
    _metric(out, "sslmanager_renewal_failures", "gauge",
            "Certificates whose renewal is failing (failing_since is set).", [({}, len(failing))])
    _metric(out, "sslmanager_renewal_failing_since_timestamp_seconds", "gauge",
            "Since when each failing certificate's renewal has been failing (Unix time).",
            [({"id": r.id, "common_name": r.common_name}, int(r.failing_since.timestamp())) for r in failing])
    _metric(out, "sslmanager_deploy_ok", "gauge", "The last deploy of each certificate succeeded (1) or failed (0).",
            [({"id": r.id, "common_name": r.common_name}, int(r.deploy_last_ok)) for r in rows
             if r.deploy_last_ok is not None])
    _metric(out, "sslmanager_scheduler_last_run_timestamp_seconds", "gauge",
            "When a scheduler last dispatched (Unix time; 0 = never).",
            [({}, int(last.timestamp()) if last else 0)])
    return "\n".join(out) + "\n"


@bp.route("/metrics")
def metrics():
    return Response(render(), content_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
