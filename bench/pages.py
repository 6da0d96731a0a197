"""Page timings with 10,000 certificates: the certificate list, a search and the dashboard (plus
the audit log), measured in the server with Flask's test client (no network, no browser).

    .venv/bin/python -m bench.pages [--certs 10000] [--requests 50] [--target-ms 100]
                                    [--database-url postgresql+psycopg://...] [--json OUT]

The data is inserted directly (bulk INSERTs, not the services) and looks like a real install:
two CA profiles; certificates with one to three names (apex, www, wildcard), mostly Active
with 90-day lifetimes spread over the next three months, some Pending, Processing, Failed,
Draft, Expired and Revoked; auto-renew on for 90 %; renewal times a third of the lifetime
before expiry; a few failing renewals and broken delegations; an encrypted private key on every
row; one to three issued versions (certificate, chain, encrypted key) for the issued ones;
timeline lines for the pending ones; 10,000 audit events.

Each page is requested a few times to warm up, then --requests times one after the other,
signed in as an admin; the time is the whole request inside the process (routing, the access
check, queries, templates). p50 and p95 per page, PASS when p95 < --target-ms.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ADMIN = ("bench", "bench password 123")
# (label, URL, htmx target or None, counted in the pass/fail verdict)
PAGES = [
    ("certificate list, page 1", "/certificates/", None, True),
    ("certificate list, page 120", "/certificates/?page=120", None, True),
    ("search 'shop12' (htmx rows)", "/certificates/?q=shop12", "cert-rows", True),
    ("search + status filter (full page)", "/certificates/?q=example&status=failed", None, True),
    ("dashboard", "/", None, True),
    ("audit log, page 1", "/audit/", None, False),
    ("audit log, text search", "/audit/?q=shop12", "audit-rows", False),
]
STATUSES = (["active"] * 80 + ["pending"] * 5 + ["processing"] * 2 + ["failed"] * 4 + ["draft"] * 3
            + ["expired"] * 4 + ["revoked"] * 2)


def make_app(instance: Path, database_url: str | None):
    from webapp import create_app, db
    config = {"SSLMANAGER_INSTANCE_PATH": str(instance), "SSLMANAGER_SCHEDULER_ENABLED": False,
              "SSLMANAGER_SECRET_KEY": "bench"}
    if database_url:
        config["SSLMANAGER_DATABASE_URL"] = database_url
    app = create_app(config)
    with app.app_context():
        db.upgrade()
    return app


def _pems():
    """One real key and certificate chain, reused by every row (what is stored is realistic)."""
    from datetime import datetime, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    from webapp.crypto import generate_private_key
    key_pem = generate_private_key("ec-p256")
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    now = datetime.now(timezone.utc)

    def cert(subject, issuer, san=None):
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + timedelta(days=90)))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), False)
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    leaf = cert("shop1.example.com", "Bench Intermediate", ["shop1.example.com", "www.shop1.example.com"])
    chain = cert("Bench Intermediate", "Bench Root") + cert("Bench Root", "Bench Root")
    return key_pem, leaf, chain


def populate(app, certs: int, seed: int = 7) -> dict:
    """Bulk-insert the rows; returns counts of what was made."""
    from sqlalchemy import insert, select

    from webapp import db
    from webapp.models import (
        AuditEvent,
        CAProfile,
        Certificate,
        CertificateVersion,
        TimelineEvent,
        utcnow,
    )
    from webapp.services.auth import create_admin
    rnd = random.Random(seed)
    key_pem, leaf_pem, chain_pem = _pems()
    now = utcnow()
    made = {}
    with app.app_context():
        create_admin(*ADMIN)
        s = db.session()
        s.execute(insert(CAProfile), [
            {"name": "LE PROD", "module": "letsencrypt", "ca_key": "production", "email": "it@company.test",
             "dns_zone": "acme.company.test", "allow_wildcard": True, "last_test_ok": True, "last_test_at": now},
            {"name": "ZeroSSL", "module": "zerossl", "ca_key": "production", "email": "it@company.test",
             "dns_zone": "acme.company.test", "allow_wildcard": True, "last_test_ok": False,
             "last_test_at": now, "last_test_message": "register account: EAB required but missing"}])
        profiles = list(s.scalars(select(CAProfile.id)))
        rows = []
        for i in range(certs):
            base = f"shop{i}.example.com" if i % 3 else f"site{i}.customer{i % 97}.test"
            names = [base] + ([f"www.{base}"] if i % 2 else []) + ([f"*.{base}"] if i % 5 == 0 else [])
            status = rnd.choice(STATUSES)
            issued = status in ("active", "expired", "revoked") or (status == "failed" and i % 2)
            lifetime = timedelta(days=90)
            not_after = None
            if issued:
                not_after = (now - timedelta(days=rnd.randint(1, 60)) if status == "expired"
                             else now + timedelta(days=rnd.randint(1, 89), hours=rnd.randint(0, 23)))
            auto = rnd.random() < 0.9
            rows.append({
                "profile_id": profiles[i % 7 == 0], "domains": names, "common_name": base,
                "search_text": " ".join(names), "status": status, "key_type": "ec-p256", "auto_renew": auto,
                "private_key": key_pem if status != "draft" else None,
                "not_before": not_after - lifetime if not_after else None, "not_after": not_after,
                "serial": f"{rnd.getrandbits(64):016x}" if issued else "",
                "renew_at": not_after - lifetime / 3 if not_after and auto else None,
                "renew_reason": "rule: a third of the 90-day lifetime remains" if not_after and auto else "",
                "failing_since": now - timedelta(days=2) if (status == "failed" or (status == "active" and i % 97 == 0)) else None,
                "last_error": "finalize: the CA refused the request (rateLimited)" if status == "failed" else "",
                "delegation_ok": (i % 113 != 0) if status == "active" else None,
                "delegation_message": "_acme-challenge CNAME points elsewhere" if status == "active" and i % 113 == 0 else "",
                "next_run_at": now + timedelta(minutes=rnd.randint(1, 60)) if status in ("pending", "processing") else None,
                "created_at": (created := now - timedelta(days=rnd.randint(0, 400))),
                "pending_since": created if status == "pending" else None,
            })
        s.execute(insert(Certificate), rows)
        s.commit()
        ids = list(s.execute(select(Certificate.id, Certificate.status, Certificate.not_after,
                                    Certificate.created_at)))
        versions, timeline = [], []
        for cid, status, not_after, created in ids:
            if not_after is not None:
                for n in range(1, 1 + (cid % 3) + 1):  # one to three issued versions
                    end = not_after - timedelta(days=60 * (1 + (cid % 3) - n))
                    versions.append({"certificate_id": cid, "number": n, "cert_pem": leaf_pem, "chain_pem": chain_pem,
                                     "private_key": key_pem, "serial": f"{cid:08x}{n:04x}", "issuer": "CN=Bench Intermediate",
                                     "not_before": end - timedelta(days=90), "not_after": end})
            if status == "pending":
                timeline.append({"certificate_id": cid, "at": created, "level": "info",
                                 "message": "pending: waiting for the _acme-challenge CNAMEs"})
        s.execute(insert(CertificateVersion), versions)
        s.execute(insert(TimelineEvent), timeline)
        actions = ["certificate created", "certificate issued", "certificate renewed", "CA profile tested",
                   "signed in", "private key downloaded", "renewal failed"]
        s.execute(insert(AuditEvent), [
            {"at": now - timedelta(minutes=certs - j), "actor": ("scheduler", "alice", "bob")[j % 3],
             "action": actions[j % len(actions)], "object_type": "certificate", "object_id": str(1 + j % certs),
             "summary": f"shop{j % certs}.example.com"} for j in range(certs)])
        s.commit()
        made = {"certificates": len(rows), "versions": len(versions), "timeline": len(timeline), "audit": certs}
    return made


def signed_in_client(app):
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    resp = client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token})
    assert resp.status_code == 302, resp.status_code
    return client


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def measure(client, url: str, target: str | None, requests: int, warmup: int = 5) -> list[float]:
    headers = {"HX-Request": "true", "HX-Target": target} if target else {}
    for _ in range(warmup):
        assert client.get(url, headers=headers).status_code == 200, url
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        resp = client.get(url, headers=headers)
        resp.get_data()
        times.append((time.perf_counter() - started) * 1000)
        assert resp.status_code == 200, (url, resp.status_code)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--target-ms", type=float, default=100.0)
    parser.add_argument("--database-url", help="PostgreSQL instead of a temporary SQLite database")
    parser.add_argument("--json", help="also write the rows in bench.run_all's JSON shape")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="sslm-bench-pages-") as tmp:
        app = make_app(Path(tmp) / "instance", args.database_url)
        started = time.perf_counter()
        made = populate(app, args.certs)
        fill_s = time.perf_counter() - started
        client = signed_in_client(app)
        with app.app_context():
            backend = app.extensions["sslmanager"].engine.dialect.name
        print(f"bench.pages: {made['certificates']} certificates, {made['versions']} versions, "
              f"{made['timeline']} timeline lines, {made['audit']} audit events inserted in {fill_s:.1f} s")
        print(f"  {backend}{' ' + sqlite3.sqlite_version if backend == 'sqlite' else ''}, Python "
              f"{platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
              f"at the start; {args.requests} requests per page after 5 warm-up; server time in-process "
              f"(Flask test client)")
        print()
        print(f"{'page':38} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  verdict (p95 < {args.target_ms:g} ms)")
        results, failed = [], False
        for label, url, target, counted in PAGES:
            times = measure(client, url, target, args.requests)
            p50, p95 = statistics.median(times), percentile(times, 0.95)
            ok = p95 < args.target_ms
            failed |= counted and not ok
            verdict = ("PASS" if ok else "FAIL") + ("" if counted else " (extra, not counted)")
            print(f"{label:38} {p50:8.1f} {p95:8.1f} {max(times):8.1f}  {verdict}")
            results.append({"figure": f"{label} ({url})", "sslm": f"p50 {p50:.1f} ms, p95 {p95:.1f} ms",
                            "peer1": "", "peer2": "", "check": verdict})
        print(f"  load average {os.getloadavg()[0]:.2f} at the end (wall times grow with other work on the machine)")
        print()
        print("RESULT:", "FAIL" if failed else "PASS", f"(every counted page p95 < {args.target_ms:g} ms)")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "header": [(f"pages: {made['certificates']} certificates on {backend}, "
                            f"{args.requests} requests per page, in-process")],
                "rows": [{"section": "Page server time with 10,000 certificates (Flask test client)"}] + results,
                "notes": [], "columns": {"sslm": "SSL Manager", "peer1": "", "peer2": ""}}, indent=2))
        with app.app_context():
            app.extensions["sslmanager"].engine.dispose()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
