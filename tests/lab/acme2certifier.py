"""acme2certifier: a second, independent ACME server for the lab (ARI, profiles, EAB, CAA ids).

    app --ACME/HTTPS--> a2c_server.py (in .lab/a2c-venv) --DNS-01, port 53 only--> own Unbound
                        request log + switches (middleware)    on 127.X.Y.Z:53 --stubs--> Bind
                        acme2certifier WSGI app + openssl CA handler (lab root + issuing CA)

Pitfalls met while building it (and facts checked in acme2certifier 0.46.3's source):
- It lives in its own venv (.lab/a2c-venv, made by `./dev test` from a2c-requirements.txt):
  it pins certbot's `acme`, josepy and pyOpenSSL, which must not move the app's packages.
  a2c_server.py runs there and may import only the standard library and acme2certifier.
- DNS-01 is looked up with dnspython on port 53 of the `dns_server_list` addresses, with no
  way to give a port: each instance gets its own Unbound on a random 127.X.Y.Z:53 (we run as
  root), so concurrent test runs never share one.
- The WSGI module reads ACME_SRV_CONFIGFILE and opens (creates) the SQLite database at import;
  the config is cached for the process. [Renewalinfo] options are read from that cached object
  at every request, which is why the middleware can change them live (control.json "config");
  anything else (CA handler, profiles, EAB) needs restart(). The database survives restarts.
- It refuses a newAccount without a contact address (invalidContact) unless
  [Account] contact_check_disable; SSL Manager profiles always carry an email.
- Profiles: `[Order] profiles` (JSON name -> description) is advertised in directory `meta`;
  each profile here maps to its own openssl handler section (multi_handler, `[Order]
  profile_cahandler`) so profiles really differ in lifetime. An unknown profile is ignored.
- renewalInfo's window is [issued + 85 % of the lifetime, notAfter]; `renewal_force: True`
  answers [now - 364 d, now + 1 d] (a CA asking for renewal now); Retry-After is
  retry_after_timeout. `replaces` is accepted and not enforced (hence the refuse switch).
- The directory carries RFC 8555's optional `newAuthz` (it has no such endpoint) and a random
  key pointing at a forum post, the way Let's Encrypt does.
- The chain it returns is leaf + issuing CA; root_pem() is the trust anchor.
- dns-persist-01 (`extra_config={"Challenge": {"dns_persist_01_support": "True"}}`; wildcards
  also need `dns_persist_allow_policy_wildcard`): issuer-domain-names is [Directory]
  caaidentities, accounturi the account URL. Two contract breaks, repaired in a2c_server.py
  (lab only): a failed challenge's error is never stored (its SQLite handler's
  challenge_update() skips validation_error), and the order stays "pending" after an
  authorization went invalid (RFC 8555 7.1.6). It also validated a challenge on a POST-as-GET.
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import ssl
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .dnsservers import Bind, Unbound
from .pebble import _key_usage, listener_certificate
from .proc import LabServerError, ManagedServer, _terminate, free_loopback_address, free_port

REPO = Path(__file__).resolve().parents[2]
A2C_VENV = Path(os.environ.get("LAB_A2C_VENV") or REPO / ".lab" / "a2c-venv")
SERVER_SCRIPT = Path(__file__).with_name("a2c_server.py")
# Profile name -> certificate lifetime in days (None: the instance's cert_validity_days).
DEFAULT_PROFILES: dict[str, int | None] = {"classic": None, "shortlived": 6}
DEFAULT_HANDLER = "default"
NEW_ORDER_PATH = "/acme/neworders"
RENEWAL_INFO_PATH = "/acme/renewal-info/"
# What restart() may change (the constructor's keyword options).
OPTIONS = ("cert_validity_days", "profiles", "renewal_force", "retry_after_timeout",
           "renewalthreshold_pctg", "eab_keys", "caa_identities", "extra_config", "debug")


class Acme2Certifier(ManagedServer):
    """acme2certifier on https://127.0.0.1:PORT/directory validating DNS-01 through its own
    Unbound, which stubs `bind`'s zones to `bind`. See the module docstring."""

    name = "acme2certifier"
    host = "127.0.0.1"

    def __init__(
        self,
        bind: Bind,
        *,
        cert_validity_days: int = 90,
        profiles: dict[str, int | None] | None = None,
        renewal_force: bool = False,
        retry_after_timeout: int = 86400,
        renewalthreshold_pctg: float = 85.0,
        eab_keys: dict[str, str] | None = None,
        caa_identities: tuple[str, ...] = ("a2c.lab.test",),
        extra_config: dict[str, dict[str, str]] | None = None,
        debug: bool = False,
    ) -> None:
        super().__init__()
        self.bind = bind
        self.cert_validity_days = cert_validity_days
        self.profiles = dict(DEFAULT_PROFILES if profiles is None else profiles)
        self.renewal_force = renewal_force
        self.retry_after_timeout = retry_after_timeout
        self.renewalthreshold_pctg = renewalthreshold_pctg
        self.eab_keys: dict[str, str] = dict(eab_keys or {})
        self.caa_identities = tuple(caa_identities)
        self.extra_config = {k: dict(v) for k, v in (extra_config or {}).items()}
        self.debug = debug
        self.port = free_port()
        self.directory_url = f"https://{self.host}:{self.port}/directory"
        self.resolver = Unbound(bind, host=free_loopback_address(53), port=53)
        self.ca_bundle: str = ""  # set by start(): the listener CA, in the workdir
        self._control: dict = {}

    # -- process -------------------------------------------------------------------------

    def _launch(self) -> None:
        python = A2C_VENV / "bin" / "python"
        if not python.exists():
            raise LabServerError(
                f"acme2certifier's venv is missing ({python}): `./dev test` makes it, or by hand "
                f"`python3 -m venv {A2C_VENV} && {python} -m pip install "
                f"-r {SERVER_SCRIPT.with_name('a2c-requirements.txt')}`"
            )
        self.resolver.start()
        ca_pem, cert_pem, key_pem = listener_certificate("SSL Manager lab a2c listener CA")
        (self.workdir / "listener-ca.pem").write_bytes(ca_pem)
        (self.workdir / "listener.pem").write_bytes(cert_pem + ca_pem)
        (self.workdir / "listener-key.pem").write_bytes(key_pem)
        self.ca_bundle = str(self.workdir / "listener-ca.pem")
        self._ssl = ssl.create_default_context(cafile=self.ca_bundle)
        self._make_ca()
        if self.eab_keys:
            (self.workdir / "eab.json").write_text(json.dumps(self.eab_keys))
        self._write_control()
        self._spawn_server()

    def _spawn_server(self) -> None:
        (self.workdir / "acme_srv.cfg").write_text(self.config_text())
        wd = self.workdir
        self._spawn(
            # -I: isolated, above all without the script's folder on sys.path (tests/lab/http.py
            # would shadow the standard library's http).
            [str(A2C_VENV / "bin" / "python"), "-I", str(SERVER_SCRIPT), self.host, str(self.port),
             str(wd / "listener.pem"), str(wd / "listener-key.pem"), str(wd)],
            env={**os.environ, "ACME_SRV_CONFIGFILE": str(wd / "acme_srv.cfg")},
        )

    def _ready(self) -> bool:
        return "newOrder" in self.directory()

    def stop(self) -> None:
        super().stop()
        self.resolver.stop()

    def restart(self, *, fresh_database: bool = False, **options) -> None:
        """Stop the server process and start it again on the same port and CA, with any
        constructor option changed (e.g. cert_validity_days=2, profiles={...}); the database
        (accounts, orders, certificates) is kept unless fresh_database. The request log and
        the live switches are kept."""
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise TypeError(f"restart() takes none of {sorted(unknown)}; options: {OPTIONS}")
        for option, value in options.items():
            setattr(self, option, value)
        if "eab_keys" in options:
            (self.workdir / "eab.json").write_text(json.dumps(self.eab_keys))
        self._control.pop("config", None)  # the new config file carries the live values
        self._write_control()
        proc, self.proc = self.proc, None
        if proc is not None:
            _terminate(proc, self.stop_signal)
        if fresh_database:
            (self.workdir / "acme_srv.db").unlink(missing_ok=True)
        try:
            self._spawn_server()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    # -- configuration -------------------------------------------------------------------

    def config_text(self) -> str:
        """acme_srv.cfg for the current options."""
        sections: dict[str, dict[str, str]] = {
            "DEFAULT": {"debug": str(self.debug),
                        "dns_server_list": json.dumps([self.resolver.host])},
            "Nonce": {"nonce_check_disable": "False"},
            "DBhandler": {"handler": "wsgi", "dbfile": str(self.workdir / "acme_srv.db")},
            "Directory": {"caaidentities": json.dumps(list(self.caa_identities)),
                          "db_check": "False"},
            "Account": {"contact_check_disable": "False"},
            "Challenge": {"challenge_validation_timeout": "10"},
            "Renewalinfo": self._renewalinfo_options(),
            "Order": {"tnauthlist_support": "False"},
            "CAhandler": {"multi_handler": "True", "default_handler": DEFAULT_HANDLER},
            f"CAhandler:{DEFAULT_HANDLER}": self._handler_options(self.cert_validity_days),
        }
        if self.profiles:
            sections["Order"]["profiles"] = json.dumps(
                {name: f"{self._days(name)}-day certificates" for name in self.profiles}
            )
            sections["Order"]["profile_cahandler"] = json.dumps(
                {name: f"profile-{name}" for name in self.profiles}
            )
            for name in self.profiles:
                sections[f"CAhandler:profile-{name}"] = self._handler_options(self._days(name))
        if self.eab_keys:
            sections["EABhandler"] = {
                "eab_handler_module": "acme2certifier.eabhandlers.json_handler",
                "key_file": str(self.workdir / "eab.json"),
            }
        for section, options in self.extra_config.items():
            sections.setdefault(section, {}).update(options)
        return "".join(
            f"[{section}]\n" + "".join(f"{key}: {value}\n" for key, value in options.items()) + "\n"
            for section, options in sections.items()
        )

    def _days(self, profile: str) -> int:
        days = self.profiles[profile]
        return self.cert_validity_days if days is None else days

    def _renewalinfo_options(self) -> dict[str, str]:
        return {"renewal_force": str(self.renewal_force),
                "retry_after_timeout": str(self.retry_after_timeout),
                "renewalthreshold_pctg": str(self.renewalthreshold_pctg)}

    def _handler_options(self, validity_days: int) -> dict[str, str]:
        ca = self.workdir / "ca"
        return {
            "handler_module": "acme2certifier.cahandlers.openssl_ca_handler",
            "issuing_ca_key": str(ca / "issuing-key.pem"),
            "issuing_ca_cert": str(ca / "issuing.pem"),
            "issuing_ca_crl": str(ca / "issuing.crl"),
            "cert_save_path": str(ca / "issued"),
            "cert_validity_days": str(validity_days),
        }

    def _make_ca(self) -> None:
        """A root and an issuing CA (P-256) for the openssl handler; new at every start()."""
        ca = self.workdir / "ca"
        (ca / "issued").mkdir(parents=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        tag = os.urandom(4).hex()  # distinct names per instance: chains never mix
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = _name(f"SSL Manager lab a2c root {tag}")
        root = _ca_certificate(root_name, root_key, root_name, root_key, now, path_length=1)
        issuing_key = ec.generate_private_key(ec.SECP256R1())
        issuing = _ca_certificate(_name(f"SSL Manager lab a2c issuing CA {tag}"), issuing_key,
                                  root_name, root_key, now, path_length=0)
        pem = serialization.Encoding.PEM
        (ca / "root.pem").write_bytes(root.public_bytes(pem))
        (ca / "issuing.pem").write_bytes(issuing.public_bytes(pem))
        (ca / "issuing-key.pem").write_bytes(issuing_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    # -- switches ------------------------------------------------------------------------

    def _write_control(self) -> None:
        """control.json, read by the middleware at every request (atomic replace)."""
        path = self.workdir / "control.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._control))
        os.replace(tmp, path)

    def refuse_replaces(self, on: bool = True) -> None:
        """From the next request on, answer every newOrder carrying `replaces` with 409
        urn:ietf:params:acme:error:alreadyReplaced (and a fresh Replay-Nonce), as a CA that
        refuses `replaces` does; the order is not made. off again with on=False."""
        self._control["refuse_replaces"] = bool(on)
        self._write_control()

    def set_renewal_info(self, *, renewal_force: bool | None = None,
                         retry_after_timeout: int | None = None,
                         renewalthreshold_pctg: float | None = None) -> None:
        """Change renewalInfo answers from the next request on, without a restart:
        renewal_force=True moves every window into the past (renew now), retry_after_timeout
        is the Retry-After in seconds, renewalthreshold_pctg where in the lifetime the window
        starts. Kept across restart()."""
        for option, value in (("renewal_force", renewal_force),
                              ("retry_after_timeout", retry_after_timeout),
                              ("renewalthreshold_pctg", renewalthreshold_pctg)):
            if value is not None:
                setattr(self, option, value)
        self._control["config"] = {"Renewalinfo": self._renewalinfo_options()}
        self._write_control()
        (self.workdir / "acme_srv.cfg").write_text(self.config_text())

    def forget_accounts(self) -> int:
        """Make the CA forget every account it knows; returns how many. A request signed
        with an old kid gets accountDoesNotExist, and so does newAccount with
        onlyReturnExisting; newAccount with the same key makes a new account. Orders and
        certificates stay known (renewalInfo still answers for them). For a CA that lost
        everything, restart(fresh_database=True)."""
        # Deleting the rows would also break renewalInfo, which joins certificate -> order
        # -> account; renamed rows with an altered key are unreachable the same way.
        with sqlite3.connect(self.workdir / "acme_srv.db", timeout=10) as db:
            return db.execute("UPDATE account SET name = name || '-forgotten', "
                              "jwk = 'forgotten ' || jwk WHERE name NOT LIKE '%-forgotten'"
                              ).rowcount

    # -- reading -------------------------------------------------------------------------

    def requests_log(self, *, path: str | None = None, method: str | None = None,
                     since: int = 0) -> list[dict]:
        """Requests seen so far, oldest first: dicts with time, method, path, status and, for
        JWS POSTs, protected (header) and payload (None for POST-as-GET); "answered_by":
        "lab" when a switch answered instead of the app, "replay_nonce" when the answer had one. Filter by a path substring, a
        method, and `since` (a count from mark())."""
        try:
            lines = (self.workdir / "requests.jsonl").read_text().splitlines()
        except FileNotFoundError:
            lines = []
        entries = [json.loads(line) for line in lines[since:]]
        return [e for e in entries
                if (path is None or path in e["path"]) and (method is None or e["method"] == method)]

    def mark(self) -> int:
        """A position in the request log: requests_log(since=mark()) sees only later ones."""
        try:
            return len((self.workdir / "requests.jsonl").read_text().splitlines())
        except FileNotFoundError:
            return 0

    def new_orders(self, since: int = 0) -> list[dict]:
        """Payloads of the newOrder requests (identifiers, profile, replaces...)."""
        return [e["payload"] for e in self.requests_log(path=NEW_ORDER_PATH, since=since)]

    def renewal_info_gets(self, since: int = 0) -> list[dict]:
        """The renewalInfo GETs (their path ends with the ARI CertID)."""
        return self.requests_log(path=RENEWAL_INFO_PATH, method="GET", since=since)

    def _get(self, url: str) -> bytes:
        with urllib.request.urlopen(url, context=self._ssl, timeout=5) as resp:
            return resp.read()

    def directory(self) -> dict:
        """The ACME directory object."""
        return json.loads(self._get(self.directory_url))

    def root_pem(self) -> str:
        """PEM of the root that issued this instance's issuing CA (the trust anchor)."""
        return (self.workdir / "ca" / "root.pem").read_text()

    def issuing_pem(self) -> str:
        """PEM of the issuing CA, which signs every certificate."""
        return (self.workdir / "ca" / "issuing.pem").read_text()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca_certificate(subject: x509.Name, key, issuer: x509.Name, issuer_key,
                    now: datetime.datetime, *, path_length: int) -> x509.Certificate:
    """A CA certificate valid from an hour ago for a year, with SKI and AKI."""
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                       critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


__all__ = ["A2C_VENV", "DEFAULT_PROFILES", "Acme2Certifier"]
