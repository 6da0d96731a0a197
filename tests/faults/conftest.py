"""The fault-injection lab: the real Pebble, BIND and Unbound, with a FaultProxy between the app
and Pebble (tests/lab/faultproxy.py) so every ACME request is counted and any of them can be
made to fail."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import signed_in  # noqa: F401  (re-exported for the fault tests)
from tests.conftest import add_lab_profile, add_lab_zone
from tests.lab.faultproxy import running_proxy
from tests.lab.servers import TECH_ZONE
from webapp import db
from webapp.models import Certificate, utcnow
from webapp.services import ca_profiles, certificates, zones

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PROFILE = "Pebble via proxy"


def pytest_collection_modifyitems(items):
    """Every test here runs against the lab's real servers: `-m "not lab"` leaves them out."""
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture
def proxy(lab_pebble):
    """A FaultProxy in front of the session's Pebble."""
    with running_proxy(lab_pebble) as fault_proxy:
        yield fault_proxy


def lab_setup(app, bind, unbound, pebble, proxy, **profile_fields):
    """The technical zone on BIND, Unbound as resolver, a tested profile whose CA is the proxy."""
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{unbound.port}"]
    with app.app_context():
        add_lab_zone(bind)
        profile = add_lab_profile(pebble, name=PROFILE, directory_url=f"{proxy.base}/dir",
                                  **profile_fields)
        assert ca_profiles.test(profile).ok, profile.last_test_message


@pytest.fixture
def proxied_app(app, lab_bind, lab_unbound, lab_pebble, proxy):
    """An app whose one CA profile reaches the lab Pebble through `proxy`."""
    lab_setup(app, lab_bind, lab_unbound, lab_pebble, proxy)
    return app


def new_cert(domains: str, profile: str = PROFILE) -> Certificate:
    """A requested certificate (Pending: key, CSR, CNAME instructions)."""
    cert = certificates.create({"profile_id": ca_profiles.by_name(profile).id, "domains": domains})
    return certificates.request(cert)


def txt_left(cert: Certificate) -> list[str]:
    """TXT values still at the certificate's labels in the technical zone (an AXFR of BIND)."""
    live = zones.provider_for(TECH_ZONE).list_txt()
    return [value for item in certificates.instructions(cert) for value in live.get(item.target, [])]


def expire_claim(cert_id: int) -> None:
    """Let a dead holder's claim run out (it would after CLAIM_SECONDS) without waiting for it."""
    cert = certificates.get(cert_id)
    cert.claimed_until = utcnow() - timedelta(seconds=1)
    db.session().commit()


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run_python(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `script` in a fresh interpreter (a separate process on the same database)."""
    return subprocess.run([sys.executable, "-c", script, *args], env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


