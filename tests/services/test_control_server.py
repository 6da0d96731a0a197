"""`sslmanager cert process` handed to the running service over its Unix socket (webapp.control
is the command's side, webapp.services.control_server the service's), against the real lab."""
from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest

from webapp import control, db
from webapp.models import utcnow
from webapp.services import ca_profiles, certificates, control_server, pipeline


@pytest.mark.parametrize("argv, expected", [
    (["cert", "process", "7"], {"ids": [7], "wait": 0.0, "concurrency": None}),
    (["cert", "process", "7", "8", "--wait", "60"], {"ids": [7, 8], "wait": 60.0, "concurrency": None}),
    (["cert", "process", "--wait=1.5", "7", "--concurrency", "3"], {"ids": [7], "wait": 1.5, "concurrency": 3}),
])
def test_the_command_line_becomes_a_request(argv, expected):
    request = control.parse_process_args(argv)
    assert {key: request[key] for key in expected} == expected
    assert request["command"] == "cert-process" and request["version"] == control.VERSION


@pytest.mark.parametrize("argv", [
    ["cert", "show", "7"], ["cert", "process"], ["cert", "process", "7", "--here"],
    ["cert", "process", "--help"], ["cert", "process", "x"], ["cert", "process", "7", "--wait"],
    ["cert", "process", "7", "--wait", "soon"], ["cert", "process", "7", "--concurrency", "0"],
    ["renew", "--due"],
])
def test_anything_else_is_left_to_the_full_command_line(argv):
    # --help, --here, bad values: the full command handles them, with its usual messages.
    assert control.parse_process_args(argv) is None


@pytest.fixture
def service(lab_app, monkeypatch):
    """The control socket of `lab_app` listening in this process, and the command's environment
    pointing at the same instance."""
    instance = lab_app.extensions["sslmanager"].instance_path
    monkeypatch.setenv("SSLMANAGER_INSTANCE_PATH", instance)
    server = control_server.start(lab_app)
    assert server is not None
    yield server
    server.close()


def pending(app, name, cnames):
    with app.app_context():
        cert = certificates.create({"profile_id": ca_profiles.by_name("Pebble").id, "domains": name})
        certificates.request(cert)
        cnames(cert)
        return cert.id


def test_the_service_issues_what_the_command_hands_it(lab_app, service, cnames, capsys, caplog):
    cert_id = pending(lab_app, "handed.customer.test", cnames)
    with caplog.at_level(logging.INFO, logger="sslmanager.control"):
        code = control.hand_off(["cert", "process", str(cert_id), "--wait", "30"])
    assert code == 0
    assert capsys.readouterr().out == f"Certificate {cert_id}: active\n"
    assert any("handed over" in r.getMessage() for r in caplog.records)
    with lab_app.app_context():
        assert certificates.get(cert_id).status == "active"


def test_a_failed_certificate_handed_over_is_requested_again_as_by_the_command(lab_app, service, cnames,
                                                                              capsys):
    from tests.cli.test_cert_cli import failed_certificate
    from webapp.models import AuditEvent
    from webapp.services import audit
    cert_id, _ = failed_certificate(lab_app, "handed-retry.customer.test", cnames)
    assert control.hand_off(["cert", "process", str(cert_id), "--wait", "30"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Certificate {cert_id} was Failed: requested again, as Retry on its page does (new key and CSR).",
        f"Certificate {cert_id}: active"]
    with lab_app.app_context():
        actors = {e.actor for e in db.session().query(AuditEvent).filter_by(object_id=str(cert_id))
                  if e.action in ("certificate retried", "certificate issued")}
    assert actors == {audit.cli_actor(os.getuid())}  # the command's user, as the socket says


def test_work_spread_over_threads_is_audited_as_whoever_started_it(lab_app, cnames):
    """The control socket runs a job as the command's user: each certificate's pool thread
    carries that actor, whatever thread it runs in."""
    from webapp.models import AuditEvent
    from webapp.services import audit, bulk
    ids = [pending(lab_app, f"actor{i}.customer.test", cnames) for i in range(2)]
    lines = []
    with audit.acting_as("cli:alice"):
        code = bulk.process_and_report(lab_app, ids, 30, None, out=lines.append, err=lines.append)
    assert code == 0, lines
    with lab_app.app_context():
        issued = [(int(e.object_id), e.actor) for e in
                  db.session().query(AuditEvent).filter_by(action="certificate issued")]
    assert sorted(issued) == [(i, "cli:alice") for i in sorted(ids)]


def test_errors_come_back_as_the_command_prints_them(lab_app, service, capsys):
    assert control.hand_off(["cert", "process", "999999"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "999999" in err


def test_several_ids_report_each_and_the_total(lab_app, service, cnames, capsys):
    ids = [pending(lab_app, f"h{i}.customer.test", cnames) for i in range(2)]
    assert control.hand_off(["cert", "process", *map(str, ids), "--wait", "30"]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 Active." in out and all(f"Certificate {i} (" in out for i in ids)


def test_a_command_on_another_database_works_by_itself(lab_app, service, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("SSLMANAGER_DATABASE_URL", f"sqlite:///{tmp_path}/other.db")
    with caplog.at_level(logging.INFO, logger="sslmanager.control"):
        assert control.hand_off(["cert", "process", "1"]) is None
    assert not any("handed over" in r.getMessage() for r in caplog.records)


def test_the_socket_is_the_service_users_alone(lab_app, service):
    assert stat.S_IMODE(os.stat(service.path).st_mode) == 0o600


def test_a_second_service_stands_by_and_takes_the_socket_when_the_first_stops(lab_app, service,
                                                                              monkeypatch):
    monkeypatch.setattr(control_server, "STANDBY_SECONDS", 0.05)
    second = control_server.start(lab_app)  # several `sslmanager worker` on one instance
    try:
        assert second is not None and not second.listening
        assert control.hand_off(["cert", "process", "999999"]) == 1  # the first answers
        service.close()
        deadline = time.monotonic() + 10
        while not second.listening and time.monotonic() < deadline:
            time.sleep(0.02)
        assert second.listening
        assert control.hand_off(["cert", "process", "999999"]) == 1  # now the second does
    finally:
        second.close()


def test_a_dead_services_socket_is_ignored_then_replaced(lab_app, monkeypatch):
    instance = lab_app.extensions["sslmanager"].instance_path
    monkeypatch.setenv("SSLMANAGER_INSTANCE_PATH", instance)
    path = os.path.join(instance, "control.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()  # the file stays, nothing listens: a service killed with -9
    assert control.hand_off(["cert", "process", "1"]) is None
    server = control_server.start(lab_app)
    try:
        assert server is not None and control.hand_off(["cert", "process", "999999"]) == 1
    finally:
        server.close()
    assert not os.path.exists(path)


def test_turned_off_there_is_no_socket(lab_app, monkeypatch):
    lab_app.config["SSLMANAGER_CONTROL_SOCKET"] = "off"
    assert control_server.start(lab_app) is None
    assert not os.path.exists(os.path.join(lab_app.extensions["sslmanager"].instance_path, "control.sock"))


def test_a_broken_instance_config_is_left_to_the_full_command(lab_app, service):
    instance = lab_app.extensions["sslmanager"].instance_path
    with open(os.path.join(instance, "config.py"), "w") as fh:
        fh.write("SSLMANAGER_PAGE_SIZE = (\n")  # a syntax error: the full command names it
    try:
        assert control.hand_off(["cert", "process", "1"]) is None
    finally:
        os.remove(os.path.join(instance, "config.py"))


def test_a_relative_socket_path_is_inside_the_instance(tmp_path):
    from webapp import config
    assert config.control_socket({"SSLMANAGER_CONTROL_SOCKET": "run/ctl.sock"}, str(tmp_path)) == \
        str(tmp_path / "run" / "ctl.sock")
    assert config.control_socket({"SSLMANAGER_CONTROL_SOCKET": "/run/x.sock"}, str(tmp_path)) == "/run/x.sock"
    assert config.control_socket({}, str(tmp_path)) == str(tmp_path / "control.sock")


def test_a_service_that_takes_the_job_and_goes_silent_is_given_up_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SSLMANAGER_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("SSLMANAGER_ISSUANCE_TIMEOUT", "1")
    monkeypatch.setattr(control, "ANSWER_MARGIN", 0.0)
    with socket.socket(socket.AF_UNIX) as stuck:  # listens, reads, never answers
        stuck.bind(str(tmp_path / "control.sock"))
        stuck.listen(1)
        started = time.monotonic()
        assert control.hand_off(["cert", "process", "7"]) == 1
    assert 1 <= time.monotonic() - started < 10
    assert "sent nothing for 1 seconds" in capsys.readouterr().err


@pytest.mark.parametrize("request_line", [
    b"not json\n",
    json.dumps({"version": 99, "command": "cert-process"}).encode() + b"\n",
    json.dumps({"version": 1, "command": "rm -rf", "ids": [1]}).encode() + b"\n",
    json.dumps({"version": 1, "command": "cert-process", "ids": ["1; drop"], "wait": 0}).encode() + b"\n",
])
def test_requests_it_does_not_understand_are_refused(lab_app, service, request_line):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(service.path)
        sock.sendall(request_line)
        answer = json.loads(sock.makefile().readline())
    assert set(answer) == {"refused"}


def test_the_order_goes_on_when_the_command_stops_waiting(lab_app, service, cnames):
    cert_id = pending(lab_app, "leaver.customer.test", cnames)
    request = control.parse_process_args(["cert", "process", str(cert_id), "--wait", "30"])
    request["database"] = service.database
    with socket.socket(socket.AF_UNIX) as sock:  # ^C right after sending
        sock.connect(service.path)
        sock.sendall(json.dumps(request).encode() + b"\n")
    deadline = time.monotonic() + 30
    with lab_app.app_context():
        while certificates.get(cert_id).status != "active" and time.monotonic() < deadline:
            db.session().remove()
            time.sleep(0.1)
        assert certificates.get(cert_id).status == "active"


def test_the_console_script_hands_over_to_a_running_worker(lab_app, lab_unbound, cnames):
    # The command's environment lacks the lab's settings (private addresses, resolver): by
    # itself it could not reach Pebble (--here proves it), so Active means the worker did it.
    instance = lab_app.extensions["sslmanager"].instance_path
    cert_id = pending(lab_app, "worker.customer.test", cnames)
    with lab_app.app_context():  # out of the worker scheduler's way: only the hand-off does it
        certificates.get(cert_id).next_run_at = utcnow() + timedelta(days=1)
        db.session().commit()
    script = os.path.join(os.path.dirname(sys.executable), "sslmanager")
    command_env = {**os.environ, "SSLMANAGER_INSTANCE_PATH": instance}
    worker_env = {**command_env, "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES": "1",
                  "SSLMANAGER_DNS_RESOLVERS": f"127.0.0.1:{lab_unbound.port}"}
    here = subprocess.run([script, "cert", "process", str(cert_id), "--here"], env=command_env,
                          capture_output=True, text=True, timeout=60)
    assert here.returncode == 1, here.stdout + here.stderr
    worker = subprocess.Popen([script, "worker"], env=worker_env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(instance, "control.sock")):
            assert worker.poll() is None and time.monotonic() < deadline, worker.stdout.read()
            time.sleep(0.05)
        handed = subprocess.run([script, "cert", "process", str(cert_id), "--wait", "30"],
                                env=command_env, capture_output=True, text=True, timeout=60)
        assert handed.returncode == 0, handed.stdout + handed.stderr
        assert handed.stdout == f"Certificate {cert_id}: active\n"
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        logged = worker.stdout.read()
        worker.stdout.close()
    assert not os.path.exists(os.path.join(instance, "control.sock"))
    # The worker's own log (standard error, at SSLMANAGER_LOG_LEVEL): the job and its steps.
    assert f"control: cert process {cert_id} (wait 30.0s) handed over" in logged, logged
    assert f"certificate {cert_id}: active:" in logged


def test_handed_off_jobs_wait_for_the_ca_slot_the_scheduler_holds(lab_app, service, cnames):
    from webapp.services import scheduler, slots
    lab_app.config["SSLMANAGER_CONCURRENCY_PER_CA"] = 1
    cert_id = pending(lab_app, "slot.customer.test", cnames)
    with lab_app.app_context():
        profile_id = certificates.get(cert_id).profile_id
    bound = slots.ca_slots(lab_app)
    assert bound.try_take(profile_id)  # what the scheduler's tick does for an order it starts
    sched = scheduler.Scheduler(lab_app)
    try:
        assert sched.tick() == 0  # the scheduler, too, sees the CA's one slot taken
        codes = []
        job = threading.Thread(target=lambda: codes.append(
            control.hand_off(["cert", "process", str(cert_id), "--wait", "30"])))
        job.start()
        time.sleep(0.5)
        with lab_app.app_context():
            assert certificates.get(cert_id).status == "pending"  # waiting, not ordering
        bound.give(profile_id)
        job.join(30)
        assert codes == [0]
    finally:
        sched.shutdown()


def test_jobs_handed_off_at_once_keep_to_the_bound_per_ca(lab_app, service, cnames, monkeypatch):
    lab_app.config["SSLMANAGER_CONCURRENCY_PER_CA"] = 1
    ids = [pending(lab_app, f"burst{i}.customer.test", cnames) for i in range(3)]
    real, lock, seen = pipeline.process, threading.Lock(), {"now": 0, "peak": 0}

    def counted(cert_id):
        with lock:
            seen["now"] += 1
            seen["peak"] = max(seen["peak"], seen["now"])
        try:
            return real(cert_id)
        finally:
            with lock:
                seen["now"] -= 1
    monkeypatch.setattr(pipeline, "process", counted)
    codes = []
    jobs = [threading.Thread(target=lambda i=i: codes.append(
        control.hand_off(["cert", "process", str(i), "--wait", "30"]))) for i in ids]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(60)
    assert codes == [0, 0, 0] and seen["peak"] == 1


def test_a_job_that_gets_no_ca_slot_within_its_wait_leaves_the_certificate_and_says_why(
        lab_app, service, cnames, capsys, monkeypatch):
    from webapp.models import TimelineEvent
    from webapp.services import slots
    monkeypatch.setenv("SSLMANAGER_ISSUANCE_TIMEOUT", "5")  # the command's patience: were the
    monkeypatch.setattr(control, "ANSWER_MARGIN", 0.0)      # wait unbounded, fail in 6 s
    lab_app.config["SSLMANAGER_CONCURRENCY_PER_CA"] = 1
    cert_id = pending(lab_app, "busy.customer.test", cnames)
    with lab_app.app_context():
        profile_id = certificates.get(cert_id).profile_id
    bound = slots.ca_slots(lab_app)
    assert bound.try_take(profile_id)  # the CA's one slot stays taken throughout
    try:
        started = time.monotonic()
        assert control.hand_off(["cert", "process", str(cert_id), "--wait", "1"]) == 1
        assert time.monotonic() - started < 10  # --wait bounds the wait for a slot too
    finally:
        bound.give(profile_id)
    assert capsys.readouterr().out == f"Certificate {cert_id}: pending\n"
    with lab_app.app_context():
        lines = [e.message for e in db.session().query(TimelineEvent).filter_by(certificate_id=cert_id)]
    assert any(line.startswith("every slot for this CA stayed busy") for line in lines)
