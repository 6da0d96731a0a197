"""bench/scale.py's three nodes: `sslmanager run` + `sslmanager worker` each, on their own
instance folders, sharing the database URL and the data key, renewing a batch against Pebble;
then one node killed with -9 in the middle of a second batch."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.issuance import _RUNNING, PYTHON, ROOT, SSLM_CLI, SslManager, must, publish_cnames, run_child
from bench.renewals import max_overlap, names_for
from tests.lab.servers import TECH_ZONE, Bind, Pebble, Unbound
from webapp.services.claims import CLAIM_SECONDS

KILL_SLACK = 30  # after the claim timeout: a tick (5 s) and one renewal, with room for load


def log(text_: str) -> None:
    import sys
    print(f"[scale {time.strftime('%H:%M:%S')}] {text_}", file=sys.stderr, flush=True)


def _epoch(value) -> float:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class Node:
    """`sslmanager run` and `sslmanager worker` on one instance folder."""

    def __init__(self, index: int, work: Path, env: dict) -> None:
        self.instance = work / f"node{index}"
        self.instance.mkdir(mode=0o700)
        self.env = {**env, "SSLMANAGER_INSTANCE_PATH": str(self.instance),
                    "SSLMANAGER_SCHEDULER_ENABLED": "1", "SSLMANAGER_LOG_LEVEL": "WARNING"}
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.log = open(self.instance / "node.log", "wb")  # noqa: SIM115 (closed in stop)
        self.procs = [subprocess.Popen(argv, env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                       stdout=self.log, stderr=self.log, start_new_session=True)
                      for argv in ([SSLM_CLI, "run", "--port", str(port)], [SSLM_CLI, "worker"])]
        _RUNNING.update(self.procs)
        self.peak_kib = {p.pid: 0 for p in self.procs}

    def sample(self) -> None:
        """Peak resident memory of each process (VmHWM), read while it lives."""
        for proc in self.procs:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_kib[proc.pid] = max(self.peak_kib[proc.pid], int(line.split()[1]))

    def holders(self) -> list[str]:
        return [f"{socket.gethostname()}:{p.pid}:" for p in self.procs]

    def kill(self) -> None:
        self.sample()
        for proc in self.procs:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            _RUNNING.discard(proc)

    def stop(self) -> None:
        self.sample()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            _RUNNING.discard(proc)
        self.log.close()


def batch_state(engine, ids: list[int]) -> dict:
    """Statuses, versions per certificate and each renewal's span, from the database."""
    marks = ",".join(str(i) for i in ids)
    with engine.connect() as conn:
        statuses = dict(conn.execute(text(f"SELECT status, count(*) FROM sslm_certificate WHERE id IN ({marks}) "
                                          "GROUP BY status")).all())
        versions = dict(conn.execute(text(f"SELECT certificate_id, count(*) FROM sslm_certificate_version "
                                          f"WHERE certificate_id IN ({marks}) GROUP BY certificate_id")).all())
        lines = conn.execute(text(f"SELECT certificate_id, at, message FROM sslm_timeline_event WHERE "
                                  f"certificate_id IN ({marks}) ORDER BY id")).all()
    starts: dict[int, list[float]] = {}
    active: dict[int, list[float]] = {}
    last: dict[int, float] = {}
    for cert_id, at, message in lines:
        if message.startswith("renewal started"):
            starts.setdefault(cert_id, []).append(_epoch(at))
        if cert_id in starts:
            last[cert_id] = _epoch(at)
            if message.startswith("active:"):
                active.setdefault(cert_id, []).append(_epoch(at))
    return {"statuses": statuses, "versions": versions, "starts": starts, "active": active, "last": last}


def wait_for(engine, ids: list[int], versions: int, nodes: list[Node], timeout: float) -> dict:
    """Until every certificate has `versions` versions: a count each second, and the timeline
    read once at the end (reading every line each second took 13 % of a CPU from the nodes)."""
    end = time.monotonic() + timeout
    marks = ",".join(str(i) for i in ids)
    while True:
        for node in nodes:
            node.sample()
        with engine.connect() as conn:
            done = conn.execute(text(f"SELECT count(*) FROM (SELECT certificate_id FROM sslm_certificate_version "
                                     f"WHERE certificate_id IN ({marks}) GROUP BY certificate_id "
                                     f"HAVING count(*) >= {int(versions)}) AS finished")).scalar_one()
        if done == len(ids) or time.monotonic() > end:
            return batch_state(engine, ids)
        time.sleep(1)


def run_nodes(url: str, key: str, work: Path, args, count: int) -> dict:
    """Setup (not measured): the lab, the profile, args.renewals certificates issued and made
    due. Then the nodes start and renew them; then a second batch, one node killed in it."""
    out: dict = {}
    with contextlib.ExitStack() as stack:
        bind = stack.enter_context(Bind(zones=(TECH_ZONE, "bench.test")))
        unbound = stack.enter_context(Unbound(bind))
        pebble = stack.enter_context(Pebble(f"127.0.0.1:{unbound.port}"))
        sslm = SslManager(work, unbound)
        sslm.env.update({"SSLMANAGER_DATABASE_URL": url, "SSLMANAGER_ENCRYPTION_KEY": key,
                         "SSLMANAGER_CONCURRENCY_PER_CA": str(args.per_ca)})
        sslm.setup(bind, {"Pebble": (pebble.directory_url, pebble.ca_bundle)})
        names = names_for(count)
        publish_cnames(bind, unbound, sslm.helper({"op": "labels", "bases": names}))
        log(f"issuing {len(names)} certificates (not measured), then making them due")
        spec = json.dumps({"op": "issue-due", "profile": "Pebble", "names": names})
        made = json.loads(must(run_child([PYTHON, "-m", "bench.renewals", "--helper", spec], sslm.env,
                                         timeout=max(600, 2 * len(names))), "issue-due")
                          .stdout.strip().splitlines()[-1])
        ids = made["ids"]
        if made["statuses"] != {"active": len(ids)} or made["due"] != len(ids):
            raise SystemExit(f"setup: {made['statuses']}, {made['due']} due of {len(ids)}")
        engine = create_engine(url)
        log(f"starting {args.nodes} nodes (run + worker each); they renew the {len(ids)} due")
        nodes = [Node(i, work, sslm.env) for i in range(args.nodes)]
        stack.callback(lambda: [n.stop() for n in nodes if any(p.poll() is None for p in n.procs)])
        state = wait_for(engine, ids, 2, nodes, timeout=max(600, len(ids)))
        spans = [(s[0], state["last"][c]) for c, s in state["starts"].items()]
        renewed = [c for c in ids if state["versions"].get(c) == 2 and len(state["starts"].get(c, [])) == 1
                   and c in state["active"]]
        first = min(s for s, _ in spans) if spans else 0
        done = max(a[-1] for a in state["active"].values()) if state["active"] else first
        out["batch"] = {"n": len(ids), "renewed": len(renewed), "statuses": state["statuses"],
                        "twice": sum(len(s) > 1 for s in state["starts"].values()),
                        "seconds": done - first, "per_min": len(renewed) / max(done - first, 1e-9) * 60,
                        "max_in_flight": max_overlap(spans), "bound": args.per_ca}
        log(f"{len(renewed)} renewed in {done - first:.1f} s")
        if args.kill_batch and args.nodes > 1:
            out["kill"] = kill_one(engine, ids[:args.kill_batch], nodes)
        for node in nodes:
            node.stop()
        out["peak_mib"] = max(kib for n in nodes for kib in n.peak_kib.values()) / 1024
        engine.dispose()
    return out


def kill_one(engine, ids: list[int], nodes: list[Node]) -> dict:
    """Make `ids` due again; once a node holds claims on some, SIGKILL its two processes and
    time how long the others take to finish those."""
    now = datetime.now(UTC) - timedelta(minutes=1)
    marks = ",".join(str(i) for i in ids)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE sslm_certificate SET renew_at = :at, next_run_at = NULL "
                          f"WHERE id IN ({marks})"), {"at": now})
    held: dict[int, list[int]] = {}
    end = time.monotonic() + 120
    while not held and time.monotonic() < end:
        # The node working on the batch now (a process that frees a slot ticks again at once,
        # so one node often takes most of the work; the victim is one that holds some).
        with engine.connect() as conn:
            claimed = conn.execute(text(f"SELECT id, claimed_by FROM sslm_certificate WHERE id IN ({marks}) "
                                        "AND claimed_until IS NOT NULL")).all()
        for index, node in enumerate(nodes):
            mine = [cid for cid, by in claimed if any(by.startswith(h) for h in node.holders())]
            if mine:
                held[index] = mine
        time.sleep(0.05)
    index, held_ids = max(held.items(), key=lambda kv: len(kv[1])) if held else (0, [])
    killed_at = time.time()
    nodes[index].kill()
    log(f"killed node {index} (-9) holding {len(held_ids)} certificates of the second batch")
    others = [n for i, n in enumerate(nodes) if i != index]
    held = held_ids
    state = wait_for(engine, ids, 3, others, timeout=CLAIM_SECONDS + 240)
    finished = [state["active"][c][-1] for c in held if len(state["active"].get(c, [])) >= 2]
    return {"n": len(ids), "held": len(held), "finished": len(finished),
            "all": sum(state["versions"].get(i, 0) == 3 for i in ids),
            "twice": sum(len(state["starts"].get(c, [])) > 2 for c in ids),
            "seconds": (max(finished) - killed_at) if finished else None,
            "limit": CLAIM_SECONDS + KILL_SLACK}
