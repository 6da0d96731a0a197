"""Shared fixtures: an app on a fresh instance folder, clients signed in or not, the lab."""
from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from webapp import create_app, db
from webapp.services.auth import create_admin

pytest_plugins = ["tests.lab.fixtures"]

ADMIN = ("admin", "correct horse battery")


def make_app(tmp_path, **config):
    """A standalone app on its own instance folder, migrated."""
    settings = {"TESTING": True, "SSLMANAGER_INSTANCE_PATH": str(tmp_path / "instance"),
                "SSLMANAGER_SCHEDULER_ENABLED": False,
                "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES": True}
    settings.update(config)
    app = create_app(settings)
    with app.app_context():
        db.upgrade()
    return app


class CsrfClient(FlaskClient):
    """A test client that sends the CSRF token the way htmx does (X-CSRFToken header)."""

    token: str | None = None

    def open(self, *args, **kwargs):
        method = kwargs.get("method", "GET").upper()
        if method in {"POST", "PUT", "PATCH", "DELETE"} and self.token and not kwargs.pop("no_csrf", False):
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRFToken", self.token)
            kwargs["headers"] = headers
        else:
            kwargs.pop("no_csrf", None)
        return super().open(*args, **kwargs)

    def fetch_token(self, path="/login") -> str:
        html = super().open(path).get_data(as_text=True)
        self.token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        return self.token


def forget_claims(app) -> None:
    """A test that leaves a certificate claimed (a holder that "died") would leave the claims
    heartbeat thread beating into a database the test run has since stopped."""
    beat = app.extensions["sslmanager"].extra.get("claims")
    if beat is not None:
        with beat.lock:
            beat.held.clear()


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    app.test_client_class = CsrfClient
    yield app
    forget_claims(app)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_app(request, tmp_path):
    """An app on SQLite, then on a fresh PostgreSQL database: a test that must hold on both."""
    config = {}
    if request.param == "postgresql":
        config["SSLMANAGER_DATABASE_URL"] = request.getfixturevalue("pg_database")
    app = make_app(tmp_path, **config)
    yield app
    forget_claims(app)
    with app.app_context():
        db.session().remove()
        app.extensions["sslmanager"].engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def signed_in(app) -> CsrfClient:
    """A test client of `app` signed in as the admin (made on first use)."""
    from webapp.models import Admin
    with app.app_context():
        if db.session().query(Admin).filter_by(username=ADMIN[0]).first() is None:
            create_admin(*ADMIN)
    app.test_client_class = CsrfClient
    client = app.test_client()
    client.fetch_token()
    resp = client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    client.fetch_token("/")
    return client


@pytest.fixture
def admin_client(app):
    """A client signed in as an admin."""
    return signed_in(app)


# -- the issuance lab: a Pebble profile, the technical zone on BIND, Unbound as resolver -------

def add_lab_zone(bind) -> None:
    """The technical zone acme.tech.test, written to the lab BIND over RFC 2136 with TSIG."""
    from tests.lab.servers import TECH_ZONE, TSIG_ALGORITHM, TSIG_KEY_NAME, TSIG_SECRET
    from webapp.services import zones
    zones.add(TECH_ZONE, "rfc2136", {"server": f"127.0.0.1:{bind.port}", "tsig_key_name": TSIG_KEY_NAME,
                                     "tsig_secret": TSIG_SECRET, "tsig_algorithm": TSIG_ALGORITHM})


def add_lab_profile(pebble, name="Pebble", directory_url=None, **fields):
    """A custom-module CA profile for a lab Pebble (or a proxy in front of it)."""
    from pathlib import Path

    from tests.lab.servers import TECH_ZONE
    from webapp.services import ca_profiles
    profile = ca_profiles.create({"name": name, "module": "custom"})
    ca_profiles.update(profile, {"name": name, "directory_url": directory_url or pebble.directory_url,
                                 "ca_bundle": Path(pebble.ca_bundle).read_text(), "email": "ops@example.com",
                                 "dns_zone": TECH_ZONE, "allow_wildcard": "1", "dns_ttl": "30",
                                 "api_timeout": "10", **fields})
    return profile


def add_a2c_profile(a2c, name="acme2certifier", **fields):
    """A custom-module CA profile for a lab acme2certifier (its directory and listener CA)."""
    return add_lab_profile(a2c, name=name, **fields)


@pytest.fixture
def lab_app(app, lab_bind, lab_unbound, lab_pebble):
    """An app with a tested Pebble profile, the technical zone on BIND and Unbound as resolver."""
    from webapp.services import ca_profiles
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]
    with app.app_context():
        add_lab_zone(lab_bind)
        assert ca_profiles.test(add_lab_profile(lab_pebble)).ok
    yield app


@pytest.fixture
def a2c_app(app, lab_bind, lab_unbound, lab_a2c):
    """An app with a tested profile "acme2certifier" for lab_a2c, the technical zone on BIND and
    Unbound as resolver (lab_a2c validates through its own Unbound, stubbed to the same BIND)."""
    from webapp.services import ca_profiles
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]
    with app.app_context():
        add_lab_zone(lab_bind)
        assert ca_profiles.test(add_a2c_profile(lab_a2c)).ok
    yield app


@pytest.fixture
def cnames(lab_bind):
    """Create a certificate's _acme-challenge CNAMEs in BIND; removed after the test."""
    from webapp.services import certificates
    made = []

    def create(cert):
        for item in certificates.instructions(cert):
            lab_bind.set_cname(item.name, item.target)
            made.append(item.name)
    yield create
    for name in made:
        lab_bind.clear(name)


@pytest.fixture
def persist_records(lab_bind):
    """Create TXT records at _validation-persist names in BIND, as a domain owner would:
    `persist_records(cert)` makes the ones the certificate's page shows, `persist_records.set(
    name, *values)` any others. Removed after the test."""
    from webapp.services import certificates
    made = []

    def put(name, *values):
        zone = lab_bind.zone_of(name)
        lab_bind.update(zone, delete=[(name, 0, "TXT", None)],
                        add=[(name, 60, "TXT", '"' + v.replace('"', '\\"') + '"') for v in values])
        made.append(name)

    def create(cert):
        for item in certificates.persist_instructions(cert):
            put(item.name, item.value)
    create.set = put
    yield create
    for name in made:
        lab_bind.clear(name)


def make_certificate(app, profile_id, domains, **fields):
    """A certificate made by the service, then with model fields set directly (status, not_after…)."""
    from webapp.services import certificates
    with app.app_context():
        cert = certificates.create({"profile_id": profile_id, "domains": domains})
        for key, value in fields.items():
            setattr(cert, key, value)
        db.session().commit()
        return cert.id


# -- several processes on one database ---------------------------------------------------------

SCHEDULER_PROCESS = """
import sys, time
from webapp import create_app, db
from webapp.services import certificates, pipeline, renewals, scheduler
app = create_app({"SSLMANAGER_INSTANCE_PATH": sys.argv[1], "SSLMANAGER_DATABASE_URL": sys.argv[2],
                  "SSLMANAGER_DNS_RESOLVERS": [sys.argv[3]], "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES": True})
sched = scheduler.start(app)  # what `sslmanager run` and `sslmanager worker` do: DB lease, claims
deadline = time.monotonic() + float(sys.argv[4])
while time.monotonic() < deadline:
    time.sleep(0.2)
    with app.app_context():
        due = pipeline.due_for_processing() + renewals.due()
        db.session().remove()
    if not due and sched.wait_idle(0.1):
        break
sched.shutdown()
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_db_url(request, tmp_path):
    """One database for several processes: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/shared.db"
    return request.getfixturevalue("pg_database")


def run_scheduler_processes(instance: str, db_url: str, resolver: str, *, processes: int = 3,
                            seconds: float = 90) -> None:
    """Start `processes` interpreters, each running the scheduler until nothing is due."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [subprocess.Popen([sys.executable, "-c", SCHEDULER_PROCESS, instance, db_url, resolver,
                               str(seconds)], env=env) for _ in range(processes)]
    for proc in procs:
        assert proc.wait(timeout=seconds + 30) == 0


@pytest.fixture
def names(lab_bind):
    """Fresh domains in a lab zone (`names("customer.test")`); their records cleared after."""
    import uuid
    made = []

    def make(zone: str) -> str:
        made.append(f"d{uuid.uuid4().hex[:10]}.{zone}")
        return made[-1]
    yield make
    for name in made:  # every record the tests make sits at or just below these names
        for owner in (name, f"_acme-challenge.{name}", f"hop.{name}", f"*.{name}", f"sub.{name}"):
            lab_bind.clear(owner)
