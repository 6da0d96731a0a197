"""Deploy after issue or renewal, per certificate: the PEM files into a directory, a command
(e.g. a reload), then a TLS probe that the new certificate is what host:port serves.

The command is split with shlex and run WITHOUT a shell: `systemctl reload nginx` works,
pipes, `&&`, redirections and `$VARS` do not (put those in a script and run the script). It
gets the certificate in its environment (SSLMANAGER_CERTIFICATE_ID, _DOMAINS, _SERIAL,
_DEPLOY_DIR) and never SSL Manager's own SSLMANAGER_* settings (the data key, the database URL).
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from flask import current_app

from .. import db
from ..errors import SSLManagerError, ValidationError
from ..models import Certificate, utcnow
from . import addresses, audit, certificates
from .issuance import Timeline

FIELDS = ("deploy_dir", "deploy_command", "deploy_probe")
_PROBE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})$")
OUTPUT_TAIL = 500
MAX_COMMAND = 4096  # characters; shlex.split takes seconds on a megabyte
MAX_PATH = 4096     # PATH_MAX on Linux


class DeployError(SSLManagerError):
    """One deploy step failed; the message names the step."""


@dataclass
class DeployResult:
    ok: bool
    message: str


def configured(cert: Certificate) -> bool:
    return bool(cert.deploy_dir or cert.deploy_command or cert.deploy_probe)


def parse_probe(target: str) -> tuple[str, int]:
    """host:port or [v6]:port → (host, port); raises ValueError."""
    match = _PROBE.match(target.strip())
    if not match or not 1 <= int(match["port"]) <= 65535:
        raise ValueError(target)
    return match["v6"] or match["host"], int(match["port"])


def probe_name(cert: Certificate) -> str:
    """The SNI of the probe: the certificate's first name (a wildcard's base: SNI has no '*')."""
    return cert.domains[0].removeprefix("*.")


def update_settings(cert: Certificate, values: dict[str, Any]) -> Certificate:
    """Save the three deploy fields; nothing is written when one is wrong."""
    clean = {key: str(values.get(key, "")).strip() for key in FIELDS}
    errors = {}
    if clean["deploy_dir"] and (not os.path.isabs(clean["deploy_dir"]) or "\0" in clean["deploy_dir"]):
        errors["deploy_dir"] = "Enter an absolute directory path, e.g. /etc/ssl/example.com, or leave empty."
    if len(clean["deploy_command"]) > MAX_COMMAND:  # before shlex: it is slow on long input
        errors["deploy_command"] = (f"Keep the command under {MAX_COMMAND} characters: put a long "
                                    "one in a script and run the script.")
    elif clean["deploy_command"]:
        try:
            if not shlex.split(clean["deploy_command"]):
                raise ValueError("empty")
        except ValueError as exc:
            errors["deploy_command"] = (f"The command cannot be split into arguments ({exc}): check the "
                                        "quotes. It runs without a shell: no pipes, && or redirections.")
    if len(clean["deploy_dir"]) > MAX_PATH:
        errors["deploy_dir"] = f"Keep the directory path under {MAX_PATH} characters."
    if clean["deploy_probe"]:
        try:
            host, _port = parse_probe(clean["deploy_probe"])
        except ValueError:
            errors["deploy_probe"] = "Enter host:port, e.g. 127.0.0.1:443 or [::1]:443, or leave empty."
        else:
            problem = addresses.policy().resolve(host, "deploy")[1]
            if problem:
                errors["deploy_probe"] = problem
    if errors:
        raise ValidationError(errors)
    changed = [key for key in FIELDS if getattr(cert, key) != clean[key]]
    for key in FIELDS:
        setattr(cert, key, clean[key])
    # What will run as the service user, in the words it will run: the command itself.
    audit.record("deploy settings saved", "certificate", cert.id,
                 f"{', '.join(cert.domains)}: {', '.join(changed) or 'no changes'}; "
                 f"command: {_shown(cert.deploy_command)}; directory: {_shown(cert.deploy_dir)}; "
                 f"probe: {_shown(cert.deploy_probe)}")
    db.session().commit()
    return cert


def _shown(value: str) -> str:
    return f"`{value}`" if value else "none"


def run(cert: Certificate) -> DeployResult | None:
    """Deploy the current version: files, command, probe, in that order, stopping at the first
    failure. The outcome goes to deploy_last_* and the timeline; a failed step never raises.
    None when the certificate has nothing to deploy."""
    if not configured(cert):
        return None
    done: list[str] = []
    try:
        if certificates.current_version(cert) is None:
            raise DeployError("nothing to deploy: the certificate has not been issued yet")
        if cert.status in ("revoked", "expired"):  # a server would serve what clients refuse
            raise DeployError(f"nothing to deploy: the certificate is {cert.status}")
        if cert.deploy_dir:
            done.append(_write_files(cert))
        if cert.deploy_command:
            done.append(_run_command(cert))
        if cert.deploy_probe:
            wait = current_app.config["SSLMANAGER_DEPLOY_PROBE_WAIT"]
            done.append(probe(cert.deploy_probe, probe_name(cert), cert.serial, wait=wait))
        result = DeployResult(True, "; ".join(done))
    except DeployError as exc:
        result = DeployResult(False, "; ".join(done + [f"FAILED: {exc}"]))
    cert.deploy_last_at, cert.deploy_last_ok = utcnow(), result.ok
    cert.deploy_last_message = result.message[:4000]
    Timeline(cert)(f"deploy: {result.message}", "info" if result.ok else "error")
    db.session().commit()
    return result


def _write_files(cert: Certificate) -> str:
    try:
        written = certificates.write_export(cert, cert.deploy_dir)
    except OSError as exc:
        raise DeployError(f"writing the files to {cert.deploy_dir} failed: {exc.strerror or exc}",
                          step="files") from None
    return f"wrote {', '.join(os.path.basename(p) for p in written)} to {cert.deploy_dir}"


def _command_env(cert: Certificate) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSLMANAGER_")}
    env.update(SSLMANAGER_CERTIFICATE_ID=str(cert.id), SSLMANAGER_DOMAINS=" ".join(cert.domains),
               SSLMANAGER_SERIAL=cert.serial, SSLMANAGER_DEPLOY_DIR=cert.deploy_dir)
    return env


def _run_command(cert: Certificate) -> str:
    """Run deploy_command (no shell) with a timeout; the whole process group goes on timeout."""
    if len(cert.deploy_command) > MAX_COMMAND:  # saved before the cap: never parse it
        raise DeployError(f"the command is longer than {MAX_COMMAND} characters", step="command",
                          hint="Put it in a script and run the script.")
    argv = shlex.split(cert.deploy_command)
    timeout = current_app.config["SSLMANAGER_DEPLOY_TIMEOUT"]
    cwd = cert.deploy_dir if cert.deploy_dir and os.path.isdir(cert.deploy_dir) else None
    started = time.monotonic()

    def audited(outcome: str) -> None:
        # Every run of a command as the service user, whoever started it (a page, the scheduler).
        audit.record("deploy command run", "certificate", cert.id,
                     f"{', '.join(cert.domains)}: {_shown(cert.deploy_command)} in "
                     f"{cwd or 'the service directory'}: {outcome} after "
                     f"{time.monotonic() - started:.2f} s")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", cwd=cwd,
                                env=_command_env(cert), start_new_session=True)
    except OSError as exc:
        audited(f"did not start ({exc.strerror or exc})")
        raise DeployError(f"{argv[0]}: {exc.strerror or exc}", step="command",
                          hint="Use the program's full path; the command runs without a shell.") from None
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        audited(f"stopped at the {timeout} s limit")
        raise DeployError(f"`{cert.deploy_command}` did not finish within {timeout} s and was stopped",
                          step="command") from None
    audited(f"exit status {proc.returncode}")
    tail = output.strip()[-OUTPUT_TAIL:]
    if proc.returncode != 0:
        raise DeployError(f"`{cert.deploy_command}` exited with status {proc.returncode}"
                          + (f": {tail}" if tail else ""), step="command")
    return f"`{cert.deploy_command}` exited 0" + (f": {tail}" if tail else "")


def served_serial(host: str, port: int, server_name: str, timeout: float = 5) -> str:
    """The serial (lower-case hex) of the certificate host:port serves for server_name.

    Not verified against a CA on purpose: what is asked is "is it exactly our new certificate",
    and the serial of the certificate we issued answers that more strictly than a chain would."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    return f"{x509.load_der_x509_certificate(der).serial_number:x}"


def probe(target: str, server_name: str, serial: str, *, wait: float = 0) -> str:
    """Ask target until it serves `serial` (a reload may take a moment), at most `wait` seconds."""
    host, port = parse_probe(target)
    address, problem = addresses.policy().resolve(host, "deploy")
    if problem or address is None:
        raise DeployError(problem or f"TLS probe of {target}: cannot resolve {host}", step="probe")
    deadline = time.monotonic() + wait
    while True:
        try:
            served = served_serial(address, port, server_name)  # the address judged, every time
            if served == serial.lower():
                return f"{target} serves serial {serial} for {server_name}"
            last = f"{target} serves serial {served} for {server_name}, not the new {serial}"
        except (OSError, ssl.SSLError, ValueError) as exc:
            last = f"TLS probe of {target} ({server_name}) failed: {exc}"
        if time.monotonic() >= deadline:
            raise DeployError(last, step="probe")
        time.sleep(0.5)
