"""`sslmanager dns sweep` against the lab's real BIND: what it removes, and who it says did it;
`sslmanager dns serve` as the console script runs it: its workers, its zone, its exit."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode

from tests.lab.proc import free_port
from tests.lab.servers import TECH_ZONE
from tests.services.test_dns_manager import dns_app, new_cert, remember, target  # noqa: F401
from webapp import db
from webapp.models import AuditEvent
from webapp.services import audit, scheduler, zones


def test_dns_sweep_removes_orphan_values_now_and_says_so(dns_app, lab_bind, names):  # noqa: F811
    runner = dns_app.test_cli_runner()
    with dns_app.app_context():
        done = new_cert(names("customer.test"), status="active")
        name, done_id = target(done), done.id
        zones.provider_for(TECH_ZONE).add_txt([(name, "orphan-1")], 30)
        remember(done, name, "orphan-1")
    result = runner.invoke(args=["sslmanager", "dns", "sweep"])
    assert result.exit_code == 0, result.output
    assert f'removed {name} TXT "orphan-1"' in result.output and f"certificates: {done_id}" in result.output
    assert lab_bind.txt(name) == []
    result = runner.invoke(args=["sslmanager", "dns", "sweep"])
    assert result.exit_code == 0 and result.output.strip() == "nothing to remove"
    with dns_app.app_context():
        event = db.session().query(AuditEvent).filter_by(action="DNS sweep").one()
        assert event.actor == audit.cli_actor() and event.actor.startswith("cli:")


def test_the_scheduled_sweep_is_audited_as_the_scheduler(dns_app, lab_bind, names):  # noqa: F811
    with dns_app.app_context():
        done = new_cert(names("customer.test"), status="active")
        name = target(done)
        zones.provider_for(TECH_ZONE).add_txt([(name, "orphan-2")], 30)
        remember(done, name, "orphan-2")
    sched = scheduler.Scheduler(dns_app)
    try:
        sched.dns_sweep()
    finally:
        sched.shutdown()
    assert lab_bind.txt(name) == []
    with dns_app.app_context():
        assert [e.actor for e in db.session().query(AuditEvent).filter_by(action="DNS sweep")] == ["scheduler"]


# -- dns serve -------------------------------------------------------------------------------

SERVED = "serve.test"


def _sslmanager(env, *args, **popen):
    command = [os.path.join(os.path.dirname(sys.executable), "sslmanager"), *args]
    if popen:
        return subprocess.Popen(command, env=env, text=True, **popen)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _answers(port: int) -> bool:
    try:
        reply = dns.query.udp(dns.message.make_query(SERVED, "SOA"), "127.0.0.1", port=port,
                              timeout=0.5)
    except (dns.exception.Timeout, OSError):
        return False
    return (reply.rcode() == dns.rcode.NOERROR and bool(reply.flags & dns.flags.AA)
            and bool(reply.answer))


def _serve(tmp_path, *args):
    """An instance with a builtin zone, and `sslmanager dns serve` on it: (process, port, env)."""
    env = {**os.environ, "SSLMANAGER_INSTANCE_PATH": str(tmp_path / "inst")}
    port = free_port()
    for command in (["db", "upgrade"],
                    ["zone", "add", SERVED, "--provider", "builtin", "--listen", f"127.0.0.1:{port}"]):
        done = _sslmanager(env, *command)
        assert done.returncode == 0, done.stderr
    proc = _sslmanager(env, "dns", "serve", "--listen", f"127.0.0.1:{port}", *args,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not _answers(port):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.05)
    return proc, port, env


def _stop(proc, children: list[int]) -> None:
    proc.terminate()
    output = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, output
    assert not [child for child in children if Path(f"/proc/{child}").exists()]  # none left


def test_dns_serve_starts_one_worker_per_core_by_default(tmp_path):
    cores = os.cpu_count() or 1
    proc, port, env = _serve(tmp_path)
    children = []
    try:
        workers = f"{cores} worker" + ("s" if cores > 1 else "")
        assert proc.stdout.readline().strip() == f"Builtin DNS serving on 127.0.0.1:{port} ({workers})"
        expected = cores if cores > 1 else 0  # one core: this process serves, nothing forked
        deadline = time.monotonic() + 10
        while len(children := _children(proc.pid)) != expected:
            assert time.monotonic() < deadline, children
            time.sleep(0.05)
        check = _sslmanager(env, "zone", "check", SERVED)
        assert check.returncode == 0 and f"served at 127.0.0.1:{port}" in check.stdout, check.stdout
    finally:
        _stop(proc, children)


def test_dns_serve_with_one_worker_serves_in_its_own_process(tmp_path):
    proc, port, _ = _serve(tmp_path, "--workers", "1")
    try:
        assert proc.stdout.readline().strip() == f"Builtin DNS serving on 127.0.0.1:{port} (1 worker)"
        assert _children(proc.pid) == [] and _answers(port)
    finally:
        _stop(proc, [])


def test_dns_serve_refuses_a_worker_count_below_one(runner):
    result = runner.invoke(args=["sslmanager", "dns", "serve", "--workers", "0"])
    assert result.exit_code == 2 and "--workers" in result.output and "0" in result.output
