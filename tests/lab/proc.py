"""Process plumbing shared by the lab servers: ports, binaries, start/probe/stop."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# Ports are drawn below Linux's ephemeral range (32768-60999 by default) so that the
# kernel never hands one of them to a client socket between free_port() and the bind.
_PORT_RANGE = (20000, 32767)
_handed_out: set[int] = set()
_hosts_handed_out: set[str] = set()

POLL_INTERVAL = 0.02
LOG_TAIL_LINES = 40


class LabServerError(RuntimeError):
    """A lab server could not be started (the message carries its log tail)."""


def _bindable(port: int, host: str = "127.0.0.1") -> bool:
    """True if both TCP and UDP can bind host:port right now."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """Return a port free for both TCP and UDP on 127.0.0.1, never the same twice per process."""
    for _ in range(1000):
        port = random.randint(*_PORT_RANGE)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise LabServerError("no free TCP+UDP port found on 127.0.0.1")


def free_loopback_address(port: int) -> str:
    """A random 127.X.Y.Z (X > 0) where `port` is free for TCP and UDP, never the same twice
    per process: for servers that must sit on a fixed port (DNS on 53) beside other test runs."""
    for _ in range(1000):
        host = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        if host not in _hosts_handed_out and _bindable(port, host):
            _hosts_handed_out.add(host)
            return host
    raise LabServerError(f"no loopback address with TCP+UDP port {port} free")


def require_binary(path_or_name: str, package: str) -> str:
    """Return the executable's path, or raise naming the Debian package that provides it."""
    found = shutil.which(path_or_name)
    if found is None:
        raise LabServerError(
            f"{path_or_name} not found: install it with `apt-get install -y {package}`"
        )
    return found


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Last `lines` lines of a log file, or a note if it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class ManagedServer:
    """One server process in its own temp workdir; subclasses define _launch() and _ready()."""

    name = "server"
    startup_timeout = 30.0
    stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self.workdir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self):
        """Create the workdir, launch the process and block until it answers."""
        if self.proc is not None:
            raise LabServerError(f"{self.name} already started")
        self.workdir = Path(tempfile.mkdtemp(prefix=f"lab-{self.name}-"))
        self.log_path = self.workdir / f"{self.name}.log"
        try:
            self._launch()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the process group (politely, then SIGKILL) and remove the workdir."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _terminate(proc, self.stop_signal)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- for subclasses ------------------------------------------------------------------

    def _launch(self) -> None:
        """Write config and call self._spawn(argv)."""
        raise NotImplementedError

    def _ready(self) -> bool:
        """Probe the server once; return True when it serves (exceptions count as not yet)."""
        raise NotImplementedError

    def _spawn(self, argv: list[str], **popen_kwargs) -> None:
        """Start argv in a new session with stdout+stderr going to the log file."""
        with open(self.log_path, "ab") as log:
            # A new session lets stop() signal the whole group, children included.
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                **popen_kwargs,
            )

    def _run_setup(self, argv: list[str], **run_kwargs) -> None:
        """Run a one-shot setup command (e.g. initdb), logging its output; raise on failure."""
        with open(self.log_path, "ab") as log:
            rc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                check=False,
                **run_kwargs,
            ).returncode
        if rc != 0:
            self._fail(f"{argv[0]} exited with code {rc}")

    def _wait_ready(self) -> None:
        """Poll _ready() until it succeeds, the process dies, or the deadline passes."""
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"exited with code {self.proc.returncode} during startup")
            try:
                if self._ready():
                    return
            except Exception as exc:  # not listening yet, zone not loaded yet, ...
                last_error = exc
            time.sleep(POLL_INTERVAL)
        self._fail(f"not ready after {self.startup_timeout:.0f}s (last probe: {last_error!r})")

    def _fail(self, why: str) -> None:
        """Raise LabServerError with the log tail."""
        raise LabServerError(
            # The workdir (and log) is deleted by stop(), so the tail goes into the message.
            f"{self.name} {why}; last {LOG_TAIL_LINES} lines of its log:\n{tail(self.log_path)}"
        )

    def log_text(self) -> str:
        """The server's whole log so far (handy in assertions and debugging)."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def _terminate(proc: subprocess.Popen, sig: int, grace: float = 10.0) -> None:
    """Signal the process group, wait up to `grace` seconds, then SIGKILL what is left."""
    if proc.returncode is not None:  # already reaped: its pid may belong to someone else now
        return
    _signal_group(proc, sig)
    _wait_unreaped(proc.pid, grace)
    # The leader is at most a zombie here, so its pid (= the group id) cannot have been
    # reused: SIGKILL the group to take down any child it left behind, then reap.
    _signal_group(proc, signal.SIGKILL)
    proc.wait()


def _wait_unreaped(pid: int, timeout: float) -> None:
    """Wait until pid exits, without reaping it, or until timeout."""
    deadline = time.monotonic() + timeout
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, pid, flags) is not None:
                return
        except ChildProcessError:
            return
        time.sleep(POLL_INTERVAL)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send sig to the process group led by proc, ignoring an already-gone group."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
