"""What the agent does on the web server: write PEM files atomically, run the reload command
with a time limit, probe TLS until the new serial is served, and keep its state file.

Standard library only (no Flask, SQLAlchemy, cryptography): the agent runs on every web server
and starts once a minute from cron with --once."""
from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field

OUTPUT_TAIL = 500
FILES = ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
COMBINED = "combined.pem"  # fullchain + key in one file, the way HAProxy reads it


class InstallError(Exception):
    """One step of an install failed; the message names the step."""


@dataclass
class Material:
    """A certificate version's PEM texts, as the bundle endpoint gives them."""

    cert: str
    chain: str
    fullchain: str
    key: str


@dataclass
class Ownership:
    uid: int = -1  # -1: leave as is (os.chown's convention)
    gid: int = -1

    @classmethod
    def parse(cls, owner: str, group: str) -> "Ownership":
        """Names or numbers; ValueError naming the option when unknown."""
        uid = gid = -1
        if owner:
            # start-up: pwd/grp only when an owner or group is set
            import pwd
            try:
                uid = int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
            except KeyError:
                raise ValueError(f"--owner: no user {owner!r} on this host") from None
        if group:
            # start-up: pwd/grp only when an owner or group is set
            import grp
            try:
                gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
            except KeyError:
                raise ValueError(f"--group: no group {group!r} on this host") from None
        return cls(uid, gid)


def write_atomic(path: str, data: bytes, mode: int, owner: Ownership) -> None:
    """Temp file in the same directory, mode and owner set before any byte is written, fsync,
    rename over the old file, fsync the directory: a reader sees the old file or the new one,
    never half of one, and a crash leaves the last good file in place."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits off
        if owner.uid != -1 or owner.gid != -1:
            os.fchown(fd, owner.uid, owner.gid)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_files(directory: str, material: Material, *, combined: bool = False,
                owner: Ownership = Ownership()) -> list[str]:
    """cert, chain, fullchain and the key (0600) into directory; combined.pem (0600, it holds
    the key) too when asked. Returns the paths written."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    texts = {"cert.pem": material.cert, "chain.pem": material.chain,
             "fullchain.pem": material.fullchain, "privkey.pem": material.key}
    if combined:
        texts[COMBINED] = material.fullchain.rstrip("\n") + "\n" + material.key
    written = []
    # The key first: a server reloaded by someone else half-way sees the old pair or, at worst,
    # a new key with the old certificate for an instant; our own reload runs after all are in.
    for name in ("privkey.pem", *(n for n in texts if n != "privkey.pem")):
        path = os.path.join(directory, name)
        secret = name in ("privkey.pem", COMBINED)
        try:
            write_atomic(path, texts[name].encode(), 0o600 if secret else 0o644, owner)
        except OSError as exc:
            raise InstallError(f"writing {path} failed: {exc.strerror or exc}") from None
        written.append(path)
    return written


def run_reload(command: str, timeout: float, env: dict[str, str]) -> str:
    """The reload command, split with shlex and run without a shell, stopped (its whole process
    group) at the time limit."""
    argv = shlex.split(command)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                env={**os.environ, **env}, start_new_session=True)
    except OSError as exc:
        raise InstallError(f"reload `{command}` did not start: {exc.strerror or exc} "
                           "(give the program's full path; no shell runs it)") from None
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise InstallError(f"reload `{command}` did not finish within {timeout:g} s and was stopped") from None
    tail = output.strip()[-OUTPUT_TAIL:]
    if proc.returncode != 0:
        raise InstallError(f"reload `{command}` exited with status {proc.returncode}" + (f": {tail}" if tail else ""))
    return f"reload `{command}` exited 0"


def _tlv(der: bytes, i: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the DER element at i."""
    tag, length = der[i], der[i + 1]
    i += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[i:i + count], "big")
        i += count
    return tag, i, i + length


def der_serial(der: bytes) -> str:
    """A certificate's serial number in lower-case hex, read straight from its DER (the agent
    does not load `cryptography` for one integer)."""
    _, i, _ = _tlv(der, 0)            # Certificate
    _, i, _ = _tlv(der, i)            # tbsCertificate
    tag, start, end = _tlv(der, i)
    if tag == 0xA0:                   # [0] version, then the serial
        tag, start, end = _tlv(der, end)
    if tag != 0x02:
        raise ValueError("not an X.509 certificate")
    return f"{int.from_bytes(der[start:end], 'big'):x}"


def pem_serial(pem: str) -> str:
    body = pem.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
    return der_serial(base64.b64decode("".join(body.split())))


def served_serial(host: str, port: int, server_name: str, timeout: float = 5) -> str:
    """The serial the server at host:port serves for server_name. Not verified against a CA on
    purpose: "is it exactly the certificate we installed" is the question, and the serial
    answers it more strictly than a chain would."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    return der_serial(der)


def parse_target(target: str) -> tuple[str, int]:
    """host:port or [v6]:port; ValueError otherwise."""
    host, sep, port = target.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"--probe: {target!r} is not host:port (e.g. 127.0.0.1:443)")
    return host, int(port)


PROBE_STREAK = 3
PROBE_HOLD = 0.5   # seconds the new serial must hold, spread over the streak's connections


def probe(target: str, server_name: str, serial: str, wait: float) -> str:
    """Ask target until it serves `serial` (a reload takes a moment), for at most `wait` s;
    the pause between tries grows from 0.1 s to 2 s. Served means PROBE_STREAK connections in a
    row spread over PROBE_HOLD seconds: after nginx's reload the old worker keeps accepting
    until it gets round to its QUIT signal, which on a busy host can be after the new worker
    has answered several connections in a row (CI caught three back-to-back ones passing)."""
    host, port = parse_target(target)
    deadline = time.monotonic() + wait
    pause = 0.1
    while True:
        try:
            served = []
            for i in range(PROBE_STREAK):
                if i:
                    time.sleep(PROBE_HOLD / (PROBE_STREAK - 1))
                served.append(served_serial(host, port, server_name))
                if served[-1] != serial.lower():
                    break
            if len(served) == PROBE_STREAK and all(s == serial.lower() for s in served):
                return f"{target} serves serial {serial}"
            old = next(s for s in served if s != serial.lower())
            last = f"{target} still serves serial {old}, not the new {serial}"
        except (OSError, ssl.SSLError, ValueError, IndexError) as exc:
            last = f"TLS probe of {target} ({server_name}) failed: {exc}"
        left = deadline - time.monotonic()
        if left <= 0:
            raise InstallError(f"{last} after {wait:g} s")
        time.sleep(min(pause, left))
        pause = min(pause * 2, 2.0)


@dataclass
class State:
    """What survives a restart: the installed version per certificate, the last ETag (only
    saved once everything it covers is installed), and reports not yet delivered."""

    path: str
    etag: str = ""
    installed: dict[str, dict] = field(default_factory=dict)   # certificate id → version, serial, at
    pending_reports: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, path: str) -> "State":
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            # A damaged state file costs one re-install of each certificate, nothing more.
            raise InstallError(f"state file {path} is unreadable ({exc}); move it away and the "
                               "agent installs every certificate once more") from None
        return cls(path, str(data.get("etag", "")), dict(data.get("installed", {})),
                   list(data.get("pending_reports", []))[-100:])

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        data = {"etag": self.etag, "installed": self.installed, "pending_reports": self.pending_reports[-100:]}
        write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True).encode(), 0o600, Ownership())
