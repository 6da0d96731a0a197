"""Measured at 100,000 certificates, three nodes, PostgreSQL (and SQLite beside it).

    .venv/bin/python -m bench.scale [--count 100000] [--renewals 2000] [--kill-batch 300]
                                    [--nodes 3] [--per-ca 4] [--requests 30]
                                    [--backends postgresql,sqlite] [--json OUT]

Per backend (a throwaway PostgreSQL cluster from tests/lab, then a temporary SQLite file), in
one database:

1. --count certificates made directly (bench/pages.py's rows: every status, versions, timeline,
   audit) plus their stable CNAME labels; on PostgreSQL then `VACUUM ANALYZE` (what autovacuum
   does after a bulk load), on SQLite `db.refresh_statistics` (what the scheduler does hourly).
2. In this process, as bench/pages.py and bench/scan.py do: the admin pages' server time (Flask
   test client: the list's first and middle page, a search, a search with a status filter, the
   dashboard), the scheduler's no-op tick, the hourly notification scan with one webhook
   channel in its steady state (what the first look finds due is stored directly, see
   record_first_scan; each later look finds it sent) and the daily delegation watch, in its own process,
   over every Active auto-renewing certificate's CNAMEs against a local Unbound holding them all
   (1 in 113 missing, as broken ones).
3. The lab (BIND, Unbound, Pebble) and a CA profile on Pebble; --renewals single-name
   certificates issued and made due (not measured). Then --nodes nodes, each `sslmanager run` +
   `sslmanager worker` with its own instance folder, sharing SSLMANAGER_DATABASE_URL and
   SSLMANAGER_ENCRYPTION_KEY, renew them: rate from the first "renewal started" to the last
   "active:", none renewed twice, none failed, the most renewals in flight at once across every
   process (timeline spans) against SSLMANAGER_CONCURRENCY_PER_CA (--per-ca). Then the first
   --kill-batch are made due again, node 0 is killed with -9 while it holds some, and the time
   until the others finished those is taken against the claim timeout.
4. Peak RSS (VmHWM) of every node process and of the watch's process.

Every row is printed with its target, PostgreSQL and SQLite side by side.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.pages import make_app, measure, percentile, populate, signed_in_client  # noqa: E402
from bench.scan import StatementCounter, nothing_due  # noqa: E402
from bench.scan import measure as measure_runs  # noqa: E402

TECH = "acme.company.test"  # bench.pages' profiles' zone
TARGETS = {"page_ms": 100, "tick_ms": 50, "scan_s": 2.0, "watch_s": 600, "rss_mib": 200, "per_min": 1000}


def log(text: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def pages_for(count: int) -> list[tuple[str, str, str | None]]:
    middle = max(1, count // 50 // 2)
    return [("certificate list, page 1", "/certificates/", None),
            (f"certificate list, page {middle} (the middle)", f"/certificates/?page={middle}", None),
            ("search 'shop12' (htmx rows)", "/certificates/?q=shop12", "cert-rows"),
            ("search + status filter", "/certificates/?q=example&status=failed", None),
            ("dashboard", "/", None)]


def add_labels(app) -> tuple[int, list[tuple[str, str, bool]]]:
    """The stable label of every base of every certificate (certificates.create makes them);
    returns (how many, [(record name, target, served)] for the watch's resolver)."""
    from sqlalchemy import insert, select

    from webapp import db
    from webapp.models import Certificate, CnameLabel
    from webapp.services import domains
    records, rows, seen = [], [], set()
    with app.app_context():
        s = db.session()
        for cert_id, names, status, auto in s.execute(select(Certificate.id, Certificate.domains,
                                                             Certificate.status, Certificate.auto_renew)):
            for base in domains.challenge_bases(names):
                if base in seen:
                    continue
                seen.add(base)
                label = base64.b32encode(os.urandom(10)).decode().lower()
                rows.append({"domain": base, "zone": TECH, "label": label})
                records.append((f"_acme-challenge.{base}", f"{label}.{TECH}", cert_id % 113 != 0))
        for i in range(0, len(rows), 5000):
            s.execute(insert(CnameLabel), rows[i:i + 5000])
        s.commit()
    return len(rows), records


class LocalResolver:
    """Unbound answering every CNAME from local data (a resolver next to the nodes)."""

    def __init__(self, records: list[tuple[str, str, bool]]) -> None:
        from tests.lab.servers import Unbound

        class Loaded(Unbound):
            def _config(inner) -> str:
                zones = {".".join(name.split(".")[-2:]) for name, _, _ in records}
                extra = "".join(f'    local-zone: "{z}." static\n' for z in sorted(zones))
                extra += "".join(f'    local-data: "{n}. 60 IN CNAME {t}."\n' for n, t, ok in records if ok)
                return super()._config().replace("server:\n", "server:\n" + extra, 1)
        self.server = Loaded()

    def __enter__(self):
        return self.server.__enter__()

    def __exit__(self, *exc):
        return self.server.__exit__(*exc)


def record_first_scan(app) -> int:
    """The state after the first hourly look with the channel: its own scan() decides what is
    due, with emit() replaced by one that builds each message (the same dedupe keys) and
    stores the NotificationSent rows in bulk, as if sent. Sending ~8,000 notices one by one
    (3 commits and a timeline line each) would take minutes of bench time and says nothing
    about the hourly look; the steady-state runs after it use the real emit() and must find
    every notice already sent (scan() asserts it)."""
    from sqlalchemy import insert

    from webapp import db
    from webapp.models import NotificationSent
    from webapp.services import claims, notifications
    from webapp.services.notification_messages import build
    rows: list[dict] = []

    def emit(event, cert=None, *, profile=None, days=None, error=None, hint=None, reason="", now=None,
             enabled=None, sent=None):
        if cert is not None and event == "renewal-failed":
            error = cert.last_error if error is None else error
            hint = cert.last_error_hint if hint is None else hint
        message = build(event, cert, profile, days=days, error=error or "", hint=hint or "", reason=reason, now=now)
        rows.extend({"dedupe_key": message.dedupe_key, "channel_id": c.id, "event": event, "ok": True,
                     "certificate_id": message.certificate_id, "error": "", "attempts": 1}
                    for c in notifications.channels_for(event, profile.id if profile else None, enabled))
        return []
    real, notifications.emit = notifications.emit, emit
    try:
        with app.app_context():
            claims.take_lease("notify-scan", seconds=60)
            notifications.scan()
            for i in range(0, len(rows), 5000):
                db.session().execute(insert(NotificationSent), rows[i:i + 5000])
            db.session().commit()
            db.session().remove()
    finally:
        notifications.emit = real
    return len(rows)


def data_figures(url: str | None, tmp: Path, args) -> dict:
    from sqlalchemy import text

    from webapp import db
    from webapp.services import claims, notifications
    from webapp.services.scheduler import Scheduler
    from tests.lab.http import http_server
    out: dict = {}
    app = make_app(tmp / "data", url)
    started = time.perf_counter()
    out["made"] = populate(app, args.count)
    out["labels"], records = add_labels(app)
    with app.app_context():
        engine = app.extensions["sslmanager"].engine
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:  # what the scheduler's hourly statistics job does on SQLite
        db.refresh_statistics(engine)
    out["fill_s"] = time.perf_counter() - started
    log(f"{args.count} certificates, {out['labels']} labels in {out['fill_s']:.0f} s; pages")
    client = signed_in_client(app)
    out["pages"] = {label: measure(client, path, target, args.requests) for label, path, target in pages_for(args.count)}
    nothing_due(app)
    counter = StatementCounter(engine)
    scheduler = Scheduler(app)

    def tick() -> None:
        assert scheduler.tick() == 0, "something was due"
    out["tick"] = measure_runs(tick, counter, args.requests)
    scheduler.shutdown()

    def scan() -> None:
        with app.app_context():
            claims.take_lease("notify-scan", seconds=60)
            assert not any(notifications.scan().values()), "the steady state sent something"
            db.session().remove()
    with http_server(lambda request: (204, {}, b"")) as base:
        with app.app_context():
            app.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = True
            channel = notifications.save_channel(None, "webhook", {"name": "ops", "enabled": "1",
                                                                   "url": f"{base}/hook", "secret": "s" * 32})
            channel_id = channel.id
            db.session().remove()
        t0 = time.perf_counter()
        out["notices"] = record_first_scan(app)
        out["first_scan_s"] = time.perf_counter() - t0
        log(f"first scan's {out['notices']} notices recorded in {out['first_scan_s']:.0f} s; steady state")
        out["scan"] = measure_runs(scan, counter, 5, warmup=1)
        with app.app_context():  # the nodes renew next: no notice for a receiver that is gone
            notifications.delete_channel(notifications.get_channel(channel_id))
            db.session().commit()
    with LocalResolver(records) as resolver:
        log(f"delegation watch over {sum(ok for *_, ok in records)} served CNAMEs")
        out["watch"] = child("watch", url or f"sqlite:///{tmp / 'data' / 'sslmanager.db'}",
                             tmp / "data", {"SSLMANAGER_DNS_RESOLVERS": f"127.0.0.1:{resolver.port}"})
    with app.app_context():
        db.session().remove()
        engine.dispose()
    return out


def child(op: str, url: str, instance: Path, env: dict) -> dict:
    import subprocess
    proc = subprocess.run([sys.executable, "-m", "bench.scale", "--child", op], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, **env, "SSLMANAGER_DATABASE_URL": url,
                                                    "SSLMANAGER_INSTANCE_PATH": str(instance)})
    if proc.returncode:
        raise SystemExit(f"child {op} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_main(op: str) -> None:
    """The delegation watch in a process of its own: its time, what it checked, its peak RSS."""
    from webapp import create_app, db
    from webapp.models import Certificate
    from webapp.services import delegation
    app = create_app({"SSLMANAGER_SCHEDULER_ENABLED": False, "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES": True})
    with app.app_context():
        from webapp.services.domains import challenge_bases
        watched = cnames = 0
        for (names,) in db.session().query(Certificate.domains).filter_by(
                status="active", auto_renew=True).yield_per(2000):
            watched, cnames = watched + 1, cnames + len(challenge_bases(names))
        t0 = time.perf_counter()
        broken = delegation.delegation_watch()
        seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "certificates": watched, "cnames": cnames, "broken": len(broken),
                      "lookups": delegation.WATCH_LOOKUPS,
                      "rss_mib": peak_kib() / 1024}))


def peak_kib() -> int:
    """This process's peak RSS since its exec (VmHWM): ru_maxrss would carry the forking
    parent's peak over the exec (the bench's own 700 MiB of rows)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def backend(name: str, args) -> dict:
    from bench.scale_nodes import run_nodes
    from tests.lab.postgres import Postgres
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    os.environ["SSLMANAGER_ENCRYPTION_KEY"] = key  # every app and node of this backend
    with tempfile.TemporaryDirectory(prefix=f"sslm-bench-scale-{name}-") as tmp:
        tmp = Path(tmp)
        pg = Postgres().__enter__() if name == "postgresql" else None
        try:
            url = pg.create_database("scale") if pg else None
            log(f"{name}: data")
            out = data_figures(url, tmp, args)
            out["load"] = os.getloadavg()[0]
            count = args.sqlite_renewals if name == "sqlite" and args.sqlite_renewals else args.renewals
            if count:
                log(f"{name}: nodes")
                try:
                    out["nodes"] = run_nodes(url or f"sqlite:///{tmp / 'data' / 'sslmanager.db'}", key, tmp,
                                             args, count)
                except (Exception, SystemExit) as exc:  # the other figures still print
                    log(f"{name}: nodes failed: {exc}"[:2000])
        finally:
            if pg:
                pg.__exit__(None, None, None)
    return out


def rows(results: dict, args) -> list[dict]:
    def each(fn):
        return {b: fn(r) for b, r in results.items()}
    table = []

    def row(figure: str, target: str, values: dict, ok: dict | None = None) -> None:
        table.append({"figure": figure, "target": target, **{b: values.get(b, "-") for b in results},
                      "verdict": " / ".join(("PASS" if ok[b] else "FAIL") if ok and ok.get(b) is not None else "-"
                                            for b in results)})
    for label, _, _ in pages_for(args.count):
        p95 = each(lambda r: percentile(r["pages"][label], 0.95))
        row(f"{label}: p50 / p95", f"p95 < {TARGETS['page_ms']} ms",
            each(lambda r: f"{statistics.median(r['pages'][label]):.0f} / {percentile(r['pages'][label], 0.95):.0f} ms"),
            {b: v < TARGETS["page_ms"] for b, v in p95.items()})
    row("scheduler tick, nothing due: p50 / p95", f"p95 < {TARGETS['tick_ms']} ms",
        each(lambda r: f"{statistics.median(r['tick'][0]):.1f} / {percentile(r['tick'][0], 0.95):.1f} ms, {r['tick'][1]} SQL"),
        each(lambda r: percentile(r["tick"][0], 0.95) < TARGETS["tick_ms"]))
    row("hourly notification scan, one webhook, steady state: max of 5", f"< {TARGETS['scan_s']:g} s",
        each(lambda r: f"{max(r['scan'][0]) / 1000:.2f} s, {r['scan'][1]} SQL"),
        each(lambda r: max(r["scan"][0]) / 1000 < TARGETS["scan_s"]))
    row("  notices the first look found due (rows made directly, not timed)", "",
        each(lambda r: f"{r['notices']}"))
    row("daily delegation watch: certificates (CNAMEs), time", f"< {TARGETS['watch_s'] // 60} min, "
        "bounded", each(lambda r: f"{r['watch']['certificates']} ({r['watch'].get('cnames', '?')}), "
                       f"{r['watch']['seconds']:.0f} s, {r['watch']['lookups']} at a time, {r['watch']['broken']} broken"),
        each(lambda r: r["watch"]["seconds"] < TARGETS["watch_s"]))
    nodes = {b: r["nodes"] for b, r in results.items() if r.get("nodes")}
    peak = {b: max([r["watch"]["rss_mib"]] + ([r["nodes"]["peak_mib"]] if r.get("nodes") else []))
            for b, r in results.items()}
    row("memory per process, peak RSS (nodes' run / worker, the watch)", f"< {TARGETS['rss_mib']} MiB",
        {b: f"{v:.0f} MiB" for b, v in peak.items()}, {b: v < TARGETS["rss_mib"] for b, v in peak.items()})
    if nodes:
        row(f"renewals across {args.nodes} nodes, a batch due: per minute",
            f">= {TARGETS['per_min']} / min",
            {b: f"{n['batch']['per_min']:.0f} / min ({n['batch']['renewed']} in {n['batch']['seconds']:.0f} s)"
             for b, n in nodes.items()},
            {b: n["batch"]["per_min"] >= TARGETS["per_min"] for b, n in nodes.items()})
        row("  none renewed twice, none failed", "0 / 0",
            {b: f"{n['batch']['twice']} twice, {n['batch']['n'] - n['batch']['renewed']} not renewed "
                f"{n['batch']['statuses']}" for b, n in nodes.items()},
            {b: n["batch"]["twice"] == 0 and n["batch"]["renewed"] == n["batch"]["n"] for b, n in nodes.items()})
        row("  per-CA bound across nodes: most in flight / bound", "most <= bound",
            {b: f"{n['batch']['max_in_flight']} / {n['batch']['bound']}" for b, n in nodes.items()},
            {b: n["batch"]["max_in_flight"] <= n["batch"]["bound"] for b, n in nodes.items()})
        kills = {b: n["kill"] for b, n in nodes.items() if n.get("kill")}
        if kills:
            row("node killed -9 mid-batch: its certificates finished by the others after",
                f"<= claim timeout + {kills[next(iter(kills))]['limit'] - 90} s",
                {b: (f"{k['seconds']:.0f} s ({k['finished']} of {k['held']} held; {k['all']} of {k['n']} "
                     f"renewed, {k['twice']} twice)" if k["seconds"] is not None else f"{k['held']} held, unfinished")
                 for b, k in kills.items()},
                {b: k["seconds"] is not None and k["seconds"] <= k["limit"] and k["all"] == k["n"]
                 and k["finished"] == k["held"] and not k["twice"] for b, k in kills.items()})
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--renewals", type=int, default=2000, help="0: no nodes")
    parser.add_argument("--sqlite-renewals", type=int, default=None,
                        help="the batch on SQLite (default: --renewals)")
    parser.add_argument("--kill-batch", type=int, default=300)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--per-ca", type=int, default=4, help="SSLMANAGER_CONCURRENCY_PER_CA of the nodes")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--json")
    parser.add_argument("--raw", help="also write the raw figures here (JSON)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0
    from bench.issuance import git_state, kill_running
    load0, t0 = os.getloadavg()[0], time.monotonic()
    results = {}
    try:
        for name in args.backends.split(","):
            results[name] = backend(name, args)
            if args.raw:  # kept as each backend ends: a later failure loses nothing
                Path(args.raw).write_text(json.dumps(results, default=str))
    finally:
        kill_running()
    if args.raw:
        Path(args.raw).write_text(json.dumps(results, default=str))
    table = rows(results, args)
    header = (f"scale: {args.count:,} certificates, {args.nodes} nodes, {time.strftime('%Y-%m-%d %H:%M')}, "
              f"{git_state()}, {os.cpu_count()} CPUs, 1-min load average {load0:.1f} at the start, "
              f"{os.getloadavg()[0]:.1f} at the end, {time.monotonic() - t0:.0f} s in all")
    print(header)
    widths = [max(len(str(r[k])) for r in table + [{k: k}]) for k in ["figure", "target", *results, "verdict"]]
    for r in [{"figure": "figure", "target": "target", **{b: b for b in results}, "verdict": "verdict"}] + table:
        print("  ".join(str(r[k]).ljust(w) for k, w in zip(["figure", "target", *results, "verdict"], widths)).rstrip())
    failed = any("FAIL" in r["verdict"] for r in table)
    print("RESULT:", "FAIL" if failed else "PASS")
    if args.json:
        names = list(results)
        Path(args.json).write_text(json.dumps({
            "header": [header], "notes": [],
            "rows": [{"section": f"Scale: {args.count:,} certificates, {args.nodes} nodes"}] + [
                {"figure": f"{r['figure']} [target {r['target']}]" if r["target"] else r["figure"],
                 "sslm": r.get(names[0], ""), "peer1": r.get(names[1], "") if len(names) > 1 else "",
                 "peer2": "", "check": r["verdict"]} for r in table],
            "columns": {"sslm": names[0], "peer1": names[1] if len(names) > 1 else "", "peer2": ""}}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
