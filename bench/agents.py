"""1,000 agents polling SSL Manager: the server's CPU as a share of one core, and how long a
renewal takes to reach every agent. Issue #15's targets: under 5 % of one core for 1,000
agents every 60 s, and a renewal at every agent within one poll interval.

    .venv/bin/python -m bench.agents [--agents 1000] [--interval 60] [--seconds 180]
                                     [--threads 8] [--json OUT]

The server is `sslmanager run` (waitress, the scheduler on, SQLite) in its own process, as
deployed; its CPU is read from /proc/<pid>/stat (user + system). One token per agent,
restricted to the agent's tag plus a tag "fleet" shared by all; one certificate per agent
and one "fleet" certificate, each with an issued version.

The simulated agents speak the agent's protocol (`sslmanager agent`'s own client code): a new
connection per poll, GET /api/v1/agent/certificates with If-None-Match, a 304 when nothing
changed, each from its own loopback address (127.0.x.y). They are spread evenly over the interval with the agent's jitter (up to 10 % early,
never late), on a few client threads in this process; their CPU is not the server's.

Phases: (1) the server idle with no agent for --idle seconds (its own baseline); (2) warm-up:
every agent polls once (200, its ETag); (3) --seconds of steady polling (304s), the measured
phase (the agents' last seen and their tokens' last use are written in batches once a minute:
several of those writes fall in it); (4) the fleet certificate gets a new version (a renewal, written to the database as
issuance writes it) and each agent, on its next poll, sees it, fetches the bundle with the key
and posts its report, as the real agent does; the time until the last agent has reported is
compared with the interval, and the burst's server CPU is reported apart.

With --interval shorter than 60 the poll rate is higher than the target's (compressed time):
the CPU per poll is measured and the figure for 1,000 agents at 60 s is extrapolated from
it, and the table says so.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from webapp.agent.client import ApiError, Client  # noqa: E402  (after the sys.path line)

TARGET_SHARE = 5.0  # % of one core for 1,000 agents every 60 s
TARGET_AGENTS, TARGET_INTERVAL = 1000, 60.0


def _pem(serial: int, ip: str = "") -> tuple[str, str]:
    from datetime import datetime, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleet.example.com")])
    now = datetime.now(timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(serial).not_valid_before(now).not_valid_after(now + timedelta(days=90)))
    if ip:  # the bench's own HTTPS listener
        import ipaddress
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False)
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    cert = builder.sign(key, hashes.SHA256())
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


def populate(instance: Path, agents: int) -> tuple[list[str], int]:
    """The database: a profile, agents + 1 certificates with a version each, a token per agent.
    Returns (token secrets, the fleet certificate's id)."""
    from sqlalchemy import insert, select

    from webapp import create_app, db
    from webapp.models import CAProfile, Certificate, CertificateTag, CertificateVersion, utcnow
    from webapp.services import tokens
    app = create_app({"SSLMANAGER_INSTANCE_PATH": str(instance), "SSLMANAGER_SCHEDULER_ENABLED": False})
    pem, key = _pem(0x1000)
    now = utcnow()
    with app.app_context():
        db.upgrade()
        s = db.session()
        s.execute(insert(CAProfile), [{"name": "LE", "module": "letsencrypt", "ca_key": "production",
                                       "email": "it@company.test", "dns_zone": "acme.company.test",
                                       "last_test_ok": True, "last_test_at": now}])
        profile = s.scalar(select(CAProfile.id))
        names = ["fleet.example.com"] + [f"web-{i}.example.com" for i in range(agents)]
        s.execute(insert(Certificate), [{"profile_id": profile, "domains": [n], "common_name": n, "search_text": n,
                                         "status": "active", "serial": "1000", "not_after": now + timedelta(days=80),
                                         "renew_at": now + timedelta(days=50)} for n in names])
        ids = dict(s.execute(select(Certificate.common_name, Certificate.id)).all())
        s.add_all([CertificateVersion(certificate_id=ids[n], number=1, cert_pem=pem, chain_pem=pem, private_key=key,
                                      serial="1000", issuer="bench", not_before=now,
                                      not_after=now + timedelta(days=80)) for n in names])
        s.execute(insert(CertificateTag), [{"certificate_id": ids["fleet.example.com"], "tag": "fleet"}]
                  + [{"certificate_id": ids[f"web-{i}.example.com"], "tag": f"web-{i}"} for i in range(agents)])
        s.commit()
        secrets = [tokens.create(f"web-{i}", ["read", "keys:read"], tags=[f"web-{i}", "fleet"]).secret
                   for i in range(agents)]
        return secrets, ids["fleet.example.com"]


def renew(instance: Path, cert_id: int) -> str:
    """A new version of the fleet certificate, as issuance stores one. Returns its serial."""
    from webapp import create_app, db
    from webapp.models import Certificate, CertificateVersion, utcnow
    app = create_app({"SSLMANAGER_INSTANCE_PATH": str(instance), "SSLMANAGER_SCHEDULER_ENABLED": False})
    pem, key = _pem(0x2000)
    with app.app_context():
        s = db.session()
        cert = s.get(Certificate, cert_id)
        s.add(CertificateVersion(certificate_id=cert_id, number=2, cert_pem=pem, chain_pem=pem, private_key=key,
                                 serial="2000", issuer="bench", not_before=utcnow(),
                                 not_after=utcnow() + timedelta(days=90)))
        cert.serial = "2000"
        s.commit()
    return "2000"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SimAgent:
    def __init__(self, base: str, secret: str, name: str, source: str, ca_bundle: str = ""):
        self.client = Client(base, secret, name, timeout=60, source=source, ca_bundle=ca_bundle)
        self.etag = ""
        self.polls = self.not_modified = self.errors = 0
        self.got_new_at: float | None = None
        self.saw_new_at: float | None = None
        self.saw_due: float | None = None   # when the poll that saw it was due
        self.fleet_version: int | None = None

    def poll(self, want_serial: str | None, due: float | None = None) -> None:
        try:
            answer = self.client.certificates(self.etag)
            self.polls += 1
            if answer.status == 304:
                self.not_modified += 1
                return
            self.etag = answer.etag
            for item in answer.data["certificates"]:
                if want_serial and item["version"]["serial"] == want_serial and self.got_new_at is None:
                    self.saw_new_at = time.monotonic()
                    self.saw_due = due if due is not None else self.saw_new_at
                    bundle = self.client.bundle(item["bundle_url"])
                    assert "PRIVATE KEY" in bundle["key"]
                    self.client.report({"agent": self.client.agent, "certificate_id": item["id"],
                                        "version_id": item["version"]["id"], "serial": want_serial, "ok": True,
                                        "message": "bench"})
                    self.got_new_at = time.monotonic()
        except ApiError:
            self.errors += 1
        finally:
            self.client.close()


def drive(agents: list[SimAgent], interval: float, until: float, want: list, workers: int = 8) -> None:
    """Each agent polls every interval × U(0.9, 1.0) from a random phase, until `until`."""
    import heapq
    now = time.monotonic()
    heap = [(now + random.uniform(0, interval), i) for i in range(len(agents))]
    heapq.heapify(heap)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not heap:
                    return
                due, i = heapq.heappop(heap)
                if due > until:
                    heap.clear()
                    return
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            agents[i].poll(want[0], due)
            with lock:
                if heap or due <= until:
                    heapq.heappush(heap, (due + interval * random.uniform(0.9, 1.0), i))
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=180.0,
                        help="the measured steady phase")
    parser.add_argument("--idle", type=float, default=20.0, help="the server's own baseline, no agents")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads (sslmanager run --threads)")
    parser.add_argument("--https", action="store_true", help="serve HTTPS (`run --tls-cert`): a TLS handshake per poll")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if not 1 <= args.agents <= 5000 or not 1 <= args.seconds <= 900 or not 1 <= args.interval <= 600:
        parser.error("keep --agents within 1-5000, --seconds 1-900, --interval 1-600")
    tmp = Path(tempfile.mkdtemp(prefix="bench-agents-"))
    instance = tmp / "instance"
    t0 = time.monotonic()
    secrets, fleet = populate(instance, args.agents)
    print(f"[agents] populated {args.agents} tokens and {args.agents + 1} certificates in "
          f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    from tests.lab.proc import free_port
    port = free_port()
    env = {**os.environ, "SSLMANAGER_INSTANCE_PATH": str(instance), "SSLMANAGER_LOG_LEVEL": "WARNING"}
    sslmanager = str(Path(sys.executable).parent / "sslmanager")
    tls: list[str] = []
    ca_bundle = ""
    if args.https:
        pem, key = _pem(0x3000, "127.0.0.1")
        (tmp / "tls.pem").write_text(pem)
        (tmp / "tls.key").write_text(key)
        tls, ca_bundle = ["--tls-cert", str(tmp / "tls.pem"), "--tls-key", str(tmp / "tls.key")], str(tmp / "tls.pem")
    server = subprocess.Popen([sslmanager, "run", "--host", "127.0.0.1", "--port", str(port),
                               "--threads", str(args.threads), *tls], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "wb"), start_new_session=True)
    base = f"{'https' if args.https else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                import ssl
                context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else None
                urllib.request.urlopen(base + "/healthz", timeout=2, context=context).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"the server did not start: {(tmp / 'server.log').read_text()[-2000:]}")
                time.sleep(0.2)
        time.sleep(2)  # let the scheduler's first pass settle
        c0 = cpu_seconds(server.pid)
        time.sleep(args.idle)
        idle_cpu = cpu_seconds(server.pid) - c0
        # Each agent from its own loopback address, as a fleet's servers would be.
        sims = [SimAgent(base, s, f"web-{i}", f"127.0.{1 + i // 250}.{1 + i % 250}", ca_bundle)
                for i, s in enumerate(secrets)]
        want: list = [None]
        t_warm = time.monotonic()
        for sim in sims:  # warm-up: every agent learns its ETag (and registers)
            sim.poll(None)
        warm = time.monotonic() - t_warm
        print(f"[agents] warm-up: {len(sims)} first polls in {warm:.1f} s", file=sys.stderr, flush=True)
        polls0 = sum(s.polls for s in sims)
        c1, w1 = cpu_seconds(server.pid), time.monotonic()
        drive(sims, args.interval, time.monotonic() + args.seconds, want)
        steady_cpu, steady_wall = cpu_seconds(server.pid) - c1, time.monotonic() - w1
        steady_polls = sum(s.polls for s in sims) - polls0
        not_modified = sum(s.not_modified for s in sims)
        errors = sum(s.errors for s in sims)
        print(f"[agents] steady: {steady_polls} polls in {steady_wall:.0f} s, server CPU {steady_cpu:.2f} s",
              file=sys.stderr, flush=True)
        # the renewal
        want[0] = renew(instance, fleet)
        c2, t_renew = cpu_seconds(server.pid), time.monotonic()
        drive(sims, args.interval, t_renew + args.interval * 1.5, want)
        burst_cpu = cpu_seconds(server.pid) - c2
        reached = [s.got_new_at - t_renew for s in sims if s.got_new_at is not None]
        seen = [s.saw_new_at - t_renew for s in sims if s.saw_new_at is not None]
        seen_due = [s.saw_due - t_renew for s in sims if s.saw_due is not None]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    idle_share = 100 * idle_cpu / args.idle
    per_poll = (steady_cpu - idle_cpu * steady_wall / args.idle) / max(steady_polls, 1)
    rate = steady_polls / steady_wall
    measured_share = 100 * steady_cpu / steady_wall
    target_rate = TARGET_AGENTS / TARGET_INTERVAL
    at_target = 100 * (per_poll * target_rate) + idle_share
    compressed = abs(rate - target_rate) / target_rate > 0.15
    last = max(reached) if reached else float("nan")
    last_seen = max(seen) if seen else float("nan")
    last_due = max(seen_due) if seen_due else float("nan")
    everyone = len(seen) == len(sims)
    rows = [
        {"section": f"agents: {args.agents} simulated agents on loopback, every {args.interval:g} s, against "
                    f"`sslmanager run` (waitress, {args.threads} threads, SQLite, scheduler on), "
                    f"{'HTTPS' if args.https else 'plain HTTP'}"},
        {"figure": "server CPU, idle (no agent)", "sslm": f"{idle_share:.2f} % of a core", "peer1": "", "peer2": "",
         "check": ""},
        {"figure": f"polls measured ({rate:.1f}/s, {not_modified} were 304)", "sslm": f"{steady_polls}",
         "peer1": "", "peer2": "", "check": f"{errors} errors"},
        {"figure": "server CPU per poll (idle baseline taken off)", "sslm": f"{per_poll * 1000:.2f} ms",
         "peer1": "", "peer2": "", "check": ""},
        {"figure": "server CPU while polled, measured", "sslm": f"{measured_share:.2f} % of a core",
         "peer1": "", "peer2": "", "check": f"at {rate:.1f} polls/s"},
        {"figure": "1,000 agents every 60 s" + (" (extrapolated)" if compressed else ""),
         "sslm": f"{at_target:.2f} % of a core", "peer1": "", "peer2": "",
         "check": f"target < {TARGET_SHARE:g} %: {'PASS' if at_target < TARGET_SHARE else 'FAIL'}"},
        {"figure": f"renewal seen by the agents ({len(seen)}/{len(sims)}): the last one's poll was due",
         "sslm": f"{last_due:.1f} s", "peer1": "", "peer2": "",
         "check": f"target <= {args.interval:g} s: {'PASS' if everyone and last_due <= args.interval else 'FAIL'}"},
        {"figure": "... and answered (the bench's client threads may start a poll late under load)",
         "sslm": f"{last_seen:.1f} s", "peer1": "", "peer2": "", "check": ""},
        {"figure": f"... and installed (bundle fetched, report posted) ({len(reached)}/{len(sims)})",
         "sslm": f"{last:.1f} s", "peer1": "", "peer2": "", "check": ""},
        {"figure": "server CPU of the renewal burst (bundles + reports)", "sslm": f"{burst_cpu:.2f} s",
         "peer1": "", "peer2": "", "check": f"{burst_cpu / max(len(reached), 1) * 1000:.1f} ms per agent"},
    ]
    notes = [f"agents: warm-up (first poll of each agent: 200, agent row written) took {warm:.1f} s; "
             "simulated agents open a new connection per poll, like `sslmanager agent`"
             + ("; HTTPS: a full TLS handshake per poll." if args.https else "; plain HTTP on loopback (--https: a TLS "
                                                                                "handshake per poll).")]
    out = {"header": [], "rows": rows, "notes": notes, "columns": {"sslm": "SSL Manager", "peer1": "", "peer2": ""}}
    for r in rows:
        print(r.get("section") or f"{r['figure']:55} {r['sslm']:>22}  {r['check']}")
    for n in notes:
        print("note:", n)
    if args.json:
        Path(args.json).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
