"""`sslmanager agent`: options, one poll-and-install cycle, and the loop around it.

Settings come from the command line, then SSLMANAGER_AGENT_* environment variables, then a
config file of the same KEY=VALUE lines (/etc/sslmanager-agent.conf by default; systemd can
read the same file as an EnvironmentFile). The token is read from a file (or the environment),
never from the command line, where `ps` would show it."""
from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import sys
import threading
import time
from typing import Any

from .client import ApiError, Client
from .install import InstallError, Material, Ownership, State, pem_serial, probe, run_reload, write_files

OK, INSTALL_FAILED, USAGE, REFUSED, UNREACHABLE = 0, 1, 2, 3, 4
DEFAULT_CONFIG = "/etc/sslmanager-agent.conf"
MAX_BACKOFF = 900.0
# option → (default, help). Each is also SSLMANAGER_AGENT_<OPTION> in the environment or file.
OPTIONS: dict[str, tuple[str, str]] = {
    "server": ("", "SSL Manager's URL, e.g. https://ssl.example.net (with the embedding prefix, if any)"),
    "token_file": ("/etc/sslmanager-agent.token", "file holding the API token (scopes read and keys:read)"),
    "ca_bundle": ("", "CA certificates (PEM) that sign the server's HTTPS certificate; default: the system's"),
    "dir": ("/etc/ssl/sslmanager/{domain}", "where each certificate's files go; {domain} (first name, "
            "'*' as '_wildcard') and {id} are filled in"),
    "combined": ("no", "also write combined.pem (fullchain + key) for HAProxy: yes/no"),
    "owner": ("", "owner of the written files (name or uid); default: the agent's user"),
    "group": ("", "group of the written files (name or gid)"),
    "reload": ("", "command run after new files are written, without a shell, e.g. 'systemctl reload nginx'"),
    "reload_timeout": ("60", "seconds the reload command may take before it is stopped"),
    "probe": ("", "host:port to probe over TLS until it serves the new serial, e.g. 127.0.0.1:443"),
    "probe_wait": ("30", "seconds the probe keeps asking"),
    "interval": ("60", "seconds between polls (each one up to 10 % shorter at random)"),
    "state": ("/var/lib/sslmanager-agent/state.json", "state file: installed version per certificate, last ETag"),
    "name": ("", "this agent's name on the certificate page; default: the host name"),
}


def log(message: str) -> None:
    print(f"sslmanager agent: {message}", file=sys.stderr, flush=True)


def read_config_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines ('#' comments, optional quotes), as systemd's EnvironmentFile reads them."""
    values = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, eq, value = line.partition("=")
            if not eq:
                raise ValueError(f"{path}:{number}: expected KEY=VALUE, got {line[:60]!r}")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
    return values


def settings(argv: list[str], environ: dict[str, str]) -> tuple[dict[str, Any], bool, str]:
    """(settings, once, config path) from argv, the environment and the config file."""
    parser = argparse.ArgumentParser(prog="sslmanager agent", description=(
        "Fetch this server's certificates from SSL Manager, install them and reload the web server. "
        "Each option is also SSLMANAGER_AGENT_<OPTION> in the environment or in the config file."))
    parser.add_argument("--config", help=f"KEY=VALUE file (default {DEFAULT_CONFIG} when it exists)")
    parser.add_argument("--once", action="store_true", help="poll once and exit (for cron)")
    for name, (default, text) in OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        if name == "combined":
            parser.add_argument(flag, action="store_const", const="yes", default=None, help=text)
        else:
            parser.add_argument(flag, default=None, help=f"{text} (default: {default or 'none'})")
    args = parser.parse_args(argv)
    config_path = args.config or environ.get("SSLMANAGER_AGENT_CONFIG", "")
    from_file: dict[str, str] = {}
    if config_path or os.path.exists(DEFAULT_CONFIG):
        from_file = read_config_file(config_path or DEFAULT_CONFIG)
    out: dict[str, Any] = {}
    for name, (default, _text) in OPTIONS.items():
        key = f"SSLMANAGER_AGENT_{name.upper()}"
        given = getattr(args, name)
        out[name] = given if given is not None else environ.get(key, from_file.get(key, default))
    out["token"] = environ.get("SSLMANAGER_AGENT_TOKEN", from_file.get("SSLMANAGER_AGENT_TOKEN", ""))
    return out, args.once, config_path


def _number(value: str, option: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not low <= number <= high:
        raise ValueError(f"--{option.replace('_', '-')}: {value!r} is not a number of seconds from {low:g} to {high:g}")
    return number


class Agent:
    def __init__(self, conf: dict[str, Any]):
        if not conf["server"]:
            raise ValueError("--server: give SSL Manager's URL (or SSLMANAGER_AGENT_SERVER)")
        token = conf["token"]
        if not token:
            try:
                with open(conf["token_file"], encoding="utf-8") as fh:
                    token = fh.read().strip()
            except OSError as exc:
                raise ValueError(f"--token-file: cannot read {conf['token_file']} ({exc.strerror or exc}); "
                                 "put the API token there (mode 0600)") from None
        if not token:
            raise ValueError(f"--token-file: {conf['token_file']} is empty")
        self.interval = _number(conf["interval"], "interval", 5, 86400)
        self.reload_timeout = _number(conf["reload_timeout"], "reload_timeout", 1, 3600)
        self.probe_wait = _number(conf["probe_wait"], "probe_wait", 0, 3600)
        if conf["probe"]:
            # start-up: the check lives beside the probe itself
            from .install import parse_target
            parse_target(conf["probe"])
        self.owner = Ownership.parse(conf["owner"], conf["group"])
        self.combined = str(conf["combined"]).lower() in ("yes", "true", "1", "on")
        self.conf = conf
        self.name = conf["name"] or socket.gethostname()
        self.client = Client(conf["server"], token, self.name, ca_bundle=conf["ca_bundle"])
        self.state = State.load(conf["state"])

    def directory(self, item: dict[str, Any]) -> str:
        domain = str(item["domains"][0]).replace("*", "_wildcard").replace("/", "_")
        return self.conf["dir"].format(id=item["id"], domain=domain)

    def install(self, item: dict[str, Any]) -> str:
        """Fetch, write, reload, probe one certificate; InstallError/ApiError on failure."""
        version = item["version"]
        bundle = self.client.bundle(item["bundle_url"])
        served = pem_serial(bundle["cert"])
        if served != str(version["serial"]).lower():
            raise InstallError(f"the bundle holds serial {served}, not the listed {version['serial']}")
        directory = self.directory(item)
        material = Material(bundle["cert"], bundle["chain"], bundle["fullchain"], bundle["key"])
        written = write_files(directory, material, combined=self.combined, owner=self.owner)
        done = [f"wrote {len(written)} files to {directory}"]
        if self.conf["reload"]:
            env = {"SSLMANAGER_CERTIFICATE_ID": str(item["id"]), "SSLMANAGER_DOMAINS": " ".join(item["domains"]),
                   "SSLMANAGER_SERIAL": served, "SSLMANAGER_DIR": directory}
            done.append(run_reload(self.conf["reload"], self.reload_timeout, env))
        if self.conf["probe"]:
            done.append(probe(self.conf["probe"], str(item["domains"][0]).removeprefix("*."), served, self.probe_wait))
        return "; ".join(done)

    def report(self, report: dict[str, Any]) -> None:
        """Deliver a report now, or keep it for the next cycle when the server is unreachable."""
        try:
            self.client.report(report)
        except ApiError as exc:
            if exc.status == 0:
                self.state.pending_reports.append(report)
            else:
                log(f"report for certificate {report['certificate_id']} not accepted: {exc.message}")

    def cycle(self) -> int:
        """One poll: install every version not installed yet, report each result. The
        connection serves the whole cycle and is closed at its end: an idle agent holds no
        connection slot of the server's between polls (waitress serves 100 at once)."""
        try:
            return self._cycle()
        finally:
            self.client.close()

    def _cycle(self) -> int:
        try:
            pending, self.state.pending_reports = self.state.pending_reports, []
            for report in pending:
                self.report(report)
            answer = self.client.certificates(self.state.etag)
        except ApiError as exc:
            log(exc.message + ("; the files installed last stay in place" if exc.status == 0 else ""))
            self.state.save()
            return UNREACHABLE if exc.status == 0 else REFUSED if exc.status in (401, 403) else INSTALL_FAILED
        if answer.status == 304:
            self.state.save() if pending else None
            return OK
        failed = 0
        for item in answer.data["certificates"]:
            version = item.get("version")
            key = str(item["id"])
            if not version or self.state.installed.get(key, {}).get("version") == version["id"]:
                continue
            try:
                message, ok = self.install(item), True
                self.state.installed[key] = {"version": version["id"], "serial": str(version["serial"]).lower(),
                                             "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                             "dir": self.directory(item)}
                log(f"certificate {key} ({item['domains'][0]}): installed serial {version['serial']}: {message}")
            except (InstallError, ApiError, ValueError, OSError, KeyError, TypeError) as exc:
                message, ok = (exc.message if isinstance(exc, ApiError) else str(exc)), False
                failed += 1
                log(f"certificate {key} ({item['domains'][0]}): install FAILED, the previous files stay: {message}")
            self.report({"agent": self.name, "certificate_id": item["id"], "version_id": version["id"],
                         "serial": str(version["serial"]).lower(), "ok": ok, "message": message[:2000]})
        if not failed:
            self.state.etag = answer.etag  # a failed install is tried again at the next poll
        self.state.save()
        return INSTALL_FAILED if failed else OK

    def next_delay(self, failures: int) -> float:
        """The interval, doubled per consecutive failure up to 15 min, and up to 10 % shorter at
        random so that a thousand agents started together do not poll together. Never longer:
        a renewal reaches every agent within one interval."""
        base = min(self.interval * 2 ** max(failures - 1, 0), max(MAX_BACKOFF, self.interval))
        return base * random.uniform(0.9, 1.0)

    def loop(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            started = time.monotonic()
            code = self.cycle()
            failures = failures + 1 if code in (REFUSED, UNREACHABLE) else 0
            delay = self.next_delay(failures)
            if failures:
                log(f"next try in {delay:.0f} s")
            # From the start of this poll, not its end: a slow install does not stretch the
            # interval, so a renewal still reaches this agent within one interval.
            stop.wait(max(0.0, delay - (time.monotonic() - started)))


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    try:
        conf, once, _path = settings(sys.argv[1:] if argv is None else argv,
                                     dict(os.environ) if environ is None else environ)
        agent = Agent(conf)
    except (ValueError, OSError, InstallError) as exc:
        log(f"error: {exc}")
        return USAGE
    if once:
        return agent.cycle()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log(f"polling {agent.client.base} every {agent.interval:g} s as {agent.name!r}")
    agent.loop(stop)
    return OK
