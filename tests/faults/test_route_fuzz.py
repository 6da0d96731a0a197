"""Every route of the app, every parameter it reads, the worst values: extreme integers
(5,000 digits, 2**63, negative), huge strings, number look-alikes ("²", Arabic digits, 1e309)
and wrong types (a field sent twice, a file instead of text). The routes come from the app's
url_map and the parameter names from what the templates and views read, so a new form or
filter is fuzzed without a line here. Any 5xx fails; 4xx answers and redirects are fine."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from werkzeug.datastructures import MultiDict

import webapp
from tests.conftest import add_lab_zone
from tests.faults.conftest import signed_in
from tests.faults.test_web_security import urls
from tests.lab.http import closed_port
from webapp import db
from webapp.dns.base import available_providers
from webapp.models import Certificate, TechZone
from webapp.services import ca_profiles, notifications
from webapp.services.auth import create_admin

ROOT = Path(webapp.__file__).parent
NAME_ATTR = re.compile(r'\bname="([A-Za-z_][A-Za-z0-9_]*)"|\bfield\(\s*"([A-Za-z_][A-Za-z0-9_]*)"')
READS = re.compile(r'(?:args|form|values)\.(?:get|getlist)\(\s*"([A-Za-z_][A-Za-z0-9_]*)"')
BODY_BUDGET = 450_000  # the whole request under 500 KB (a body limit is not what is tested here)

EXTREMES = ["9" * 5000, str(2 ** 63), str(2 ** 64 + 1), str(-2 ** 63 - 1), "4611686018427387904", "-1", "0",
            "1e309", "NaN", "-0", "²", "١٢٣", "0x10", " 12 ", "", "\x00", "\u202e<script>", "%s%n{{7*7}}",
            "é" * 2000]


def parameter_names() -> list[str]:
    """Every name a template's form sends or a view reads, and every DNS provider option."""
    names: set[str] = set()
    for path in (ROOT / "templates").rglob("*.html"):
        names |= {a or b for a, b in NAME_ATTR.findall(path.read_text())}  # name="x" or field("x", ...)
    for path in (ROOT / "blueprints").glob("*.py"):
        names |= set(READS.findall(path.read_text()))
    from webapp.blueprints.audit import FILTERS
    names |= set(FILTERS)
    names |= {o.name for cls in available_providers().values() for o in cls.options}
    names.discard("csrf_token")
    return sorted(names)


@pytest.fixture
def fuzz_site(app, lab_bind, lab_unbound):
    """One of everything the routes take ids of; every network target answers at once (the lab
    BIND and Unbound, closed loopback ports) so no request waits on a timeout."""
    app.config.update(SSLMANAGER_DNS_RESOLVERS=[f"127.0.0.1:{lab_unbound.port}"],
                      SSLMANAGER_DNS_NS_PORT=lab_bind.port, SSLMANAGER_WEBHOOK_ATTEMPTS=1,
                      SSLMANAGER_NOTIFY_TIMEOUT=2, SSLMANAGER_DEPLOY_PROBE_WAIT=0,
                      PROPAGATE_EXCEPTIONS=False)  # answer as in production: a crash is a 500 page
    with app.app_context():
        add_lab_zone(lab_bind)
        profile = ca_profiles.create({"name": "Lab", "module": "custom"})
        ca_profiles.update(profile, {"name": "Lab", "directory_url": f"https://127.0.0.1:{closed_port()}/dir",
                                     "email": "ops@example.com", "dns_zone": "acme.tech.test",
                                     "dns_ttl": "60", "api_timeout": "2"})
        cert = Certificate(profile_id=profile.id, domains=["fuzz.customer.test"], common_name="fuzz.customer.test",
                           status="draft")
        db.session().add(cert)
        db.session().commit()
        channel = notifications.save_channel(None, "webhook", {"name": "Hook", "enabled": "1", "secret": "s" * 24,
                                                               "url": f"http://127.0.0.1:{closed_port()}/hook"})
        # The users' routes change another user than the one signed in (a reset password
        # would lock the fuzzer out).
        target = create_admin("fuzz-target", "a long enough password", role="viewer")
        ids = {"profile_id": profile.id, "cert_id": cert.id, "channel_id": channel.id,
               "zone_id": db.session().query(TechZone.id).scalar(), "user_id": target.id}
    return app, ids


def forms(names: list[str]):
    """(label, form data) pairs: each extreme in every field at once, a huge string spread over
    the fields, every field twice, every field a file."""
    for value in EXTREMES:
        yield f"all={value[:12]!r}", dict.fromkeys(names, value)
    size = BODY_BUDGET // len(names)
    yield f"huge strings of {size}", {name: ("x" * (size - 1)) + "'" for name in names}
    yield "each field twice", MultiDict([(name, v) for name in names for v in ("1", "x")])
    yield "files instead of text", {name: (io.BytesIO(b"\x00\xff" * 50), "f.bin") for name in names}


def test_no_route_answers_any_parameter_with_a_server_error(fuzz_site):
    app, ids = fuzz_site
    names = parameter_names()
    assert {"page", "q", "action", "expiry_days", "deploy_command", "port", "api_url", "domains", "profile_id",
            "version", "reason", "server"} <= set(names), names
    client = signed_in(app)
    gets = [path for path in urls(app, "GET", ids) if "/static/" not in path]
    # Deletions last (the objects stay for the other routes); /logout would only sign us out.
    posts = sorted((p for p in urls(app, "POST", ids) if p != "/logout"), key=lambda p: ("delete" in p, p))
    assert len(gets) > 20 and len(posts) > 15
    failures = []
    for path in gets:
        for label, query in forms(names):
            if label.startswith("files"):
                continue  # a query string has no files
            resp = client.get(path, query_string=query)
            if resp.status_code >= 500:
                failures.append(("GET", path, label, resp.status_code))
            resp.close()
    for path in posts:
        for label, data in forms(names):
            resp = client.post(path, data=data)
            if resp.status_code >= 500:
                failures.append(("POST", path, label, resp.status_code))
            resp.close()
        if client.get("/").status_code != 200:  # a route signed us out (a password form): back in
            client = signed_in(app)
    assert not failures, failures
    with app.app_context():
        db.session().remove()
