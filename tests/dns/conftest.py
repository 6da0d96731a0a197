"""Real DNS servers for the DNS layer's tests: the lab's BIND and Unbound (tests.lab.fixtures,
loaded by tests/conftest.py), plus Knot and PowerDNS started here, each in a temp dir on a free
loopback port.

`provider_case` yields a configured provider per backend (rfc2136-bind, rfc2136-knot,
rfc2136-pdns, powerdns) for the contract tests every provider must pass.
"""
from __future__ import annotations

import base64
import hashlib
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import dns.message
import dns.query
import dns.rcode
import pytest
import requests

from tests.lab.proc import ManagedServer, free_port, require_binary
from tests.lab.servers import TECH_ZONE, TSIG_ALGORITHM, TSIG_KEY_NAME, TSIG_SECRET, Unbound
from webapp.dns.base import DnsProvider
from webapp.dns.powerdns import PowerDnsProvider
from webapp.dns.rfc2136 import Rfc2136Provider


def _secret(seed: str, size: int = 32) -> str:
    """A fixed, valid base64 secret per key name."""
    return base64.b64encode(hashlib.sha512(seed.encode()).digest()[:size]).decode()


# -- Knot ------------------------------------------------------------------------------------

KNOT_KEY = "knot-key"                 # update + transfer
KNOT_READONLY_KEY = "knot-readonly"   # transfer only: updates are denied
KNOT_NOXFR_KEY = "knot-noxfr"         # update only: AXFR is denied
KNOT_ALGORITHM_KEYS = {alg: f"knot-{alg}" for alg in
                       ("hmac-sha512", "hmac-sha384", "hmac-sha224", "hmac-sha1", "hmac-md5")}


class Knot(ManagedServer):
    """knotd serving TECH_ZONE (and the `test.` TLD) with dynamic updates for KNOT_KEY.

    The `test.` zone lets a resolver climb to the TLD (CAA, zone cuts) without the real root.
    """

    name = "knot"
    host = "127.0.0.1"

    def __init__(self, zone: str = TECH_ZONE, extra_zones: tuple[str, ...] = ("test",)) -> None:
        super().__init__()
        self.zone = zone
        self.zones = (zone, *extra_zones)
        self.port = free_port()
        self.keys = {KNOT_KEY: ("hmac-sha256", _secret(KNOT_KEY)),
                     KNOT_READONLY_KEY: ("hmac-sha256", _secret(KNOT_READONLY_KEY)),
                     KNOT_NOXFR_KEY: ("hmac-sha256", _secret(KNOT_NOXFR_KEY))}
        self.keys.update({name: (alg, _secret(name)) for alg, name in KNOT_ALGORITHM_KEYS.items()})

    def _launch(self) -> None:
        knotd = require_binary("/usr/sbin/knotd", "knot")
        wd = self.workdir
        for zone in self.zones:
            (wd / f"{zone}.zone").write_text(f"""\
$ORIGIN {zone}.
$TTL 60
@   SOA ns hostmaster 1 3600 600 86400 1
@   NS  ns
ns  A   127.0.0.1
""")
        keys = "".join(f"  - id: {name}\n    algorithm: {alg}\n    secret: {secret}\n"
                       for name, (alg, secret) in self.keys.items())
        zones = "".join(f"  - domain: {zone}\n    acl: [updaters, readonly, noxfr]\n"
                        for zone in self.zones)
        updaters = ", ".join([KNOT_KEY, *KNOT_ALGORITHM_KEYS.values()])
        (wd / "knot.conf").write_text(f"""\
server:
    rundir: {wd}
    listen: {self.host}@{self.port}
    udp-workers: 2
    tcp-workers: 2
    background-workers: 2
database:
    storage: {wd}
key:
{keys}acl:
  - id: updaters
    key: [{updaters}]
    action: [update, transfer]
  - id: readonly
    key: {KNOT_READONLY_KEY}
    action: transfer
  - id: noxfr
    key: {KNOT_NOXFR_KEY}
    action: update
template:
  - id: default
    storage: {wd}
    # Keep the zone file as written; changes live in the journal under storage.
    zonefile-sync: -1
zone:
{zones}log:
  - target: stderr
    any: info
""")
        self._spawn([knotd, "-c", str(wd / "knot.conf")])

    def _ready(self) -> bool:
        for zone in self.zones:
            query = dns.message.make_query(zone, "SOA")
            reply = dns.query.udp(query, self.host, port=self.port, timeout=0.5)
            if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
                return False
        return True


# -- PowerDNS --------------------------------------------------------------------------------

PDNS_API_KEY = "lab-pdns-api-key-" + uuid.uuid4().hex[:8]
PDNS_TSIG_KEY = "pdns-key"      # may update and transfer TECH_ZONE over RFC 2136
PDNS_OTHER_KEY = "pdns-other"   # known to PowerDNS but not allowed: updates get REFUSED
PDNS_SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")


class PowerDns(ManagedServer):
    """pdns_server with the gsqlite3 backend, the HTTP API on, and TECH_ZONE created by API.

    RFC 2136 is on too (dnsupdate=yes): PDNS_TSIG_KEY may update and transfer the zone.
    """

    name = "pdns"
    host = "127.0.0.1"

    def __init__(self, zone: str = TECH_ZONE) -> None:
        super().__init__()
        self.zone = zone
        self.port = free_port()
        self.api_port = free_port()
        self.api_url = f"http://{self.host}:{self.api_port}"

    def _launch(self) -> None:
        pdns = require_binary("/usr/sbin/pdns_server", "pdns-server")
        if not PDNS_SCHEMA.exists():
            self._fail(f"{PDNS_SCHEMA} missing: apt-get install -y pdns-backend-sqlite3")
        wd = self.workdir
        with sqlite3.connect(wd / "pdns.sqlite3") as db:
            db.executescript(PDNS_SCHEMA.read_text())
        (wd / "pdns.conf").write_text(f"""\
launch=gsqlite3
gsqlite3-database={wd}/pdns.sqlite3
local-address={self.host}
local-port={self.port}
api=yes
api-key={PDNS_API_KEY}
webserver=yes
webserver-address={self.host}
webserver-port={self.api_port}
webserver-allow-from=127.0.0.0/8
socket-dir={wd}
daemon=no
guardian=no
setuid=
setgid=
loglevel=4
dnsupdate=yes
allow-dnsupdate-from=127.0.0.0/8
""")
        self._spawn([pdns, f"--config-dir={wd}"])

    def _ready(self) -> bool:
        reply = requests.get(f"{self.api_url}/api/v1/servers/localhost",
                             headers={"X-API-Key": PDNS_API_KEY}, timeout=0.5)
        return reply.status_code == 200

    def start(self):
        super().start()
        try:
            self._api("POST", "/zones", {"name": f"{self.zone}.", "kind": "Native",
                                         "nameservers": [f"ns.{self.zone}."]})
            for key in (PDNS_TSIG_KEY, PDNS_OTHER_KEY):
                self._api("POST", "/tsigkeys", {"name": key, "algorithm": "hmac-sha256",
                                                "key": _secret(key)})
            # TSIG-ALLOW-DNSUPDATE is set as metadata; TSIG-ALLOW-AXFR only through the zone's
            # master_tsig_key_ids (the metadata endpoint refuses that kind in 4.7).
            self._api("PUT", f"/zones/{self.zone}./metadata/TSIG-ALLOW-DNSUPDATE",
                      {"metadata": [PDNS_TSIG_KEY]})
            self._api("PUT", f"/zones/{self.zone}.", {"master_tsig_key_ids": [f"{PDNS_TSIG_KEY}."]})
        except BaseException:
            self.stop()
            raise
        return self

    def _api(self, method: str, path: str, body: dict) -> None:
        reply = requests.request(method, f"{self.api_url}/api/v1/servers/localhost{path}",
                                 headers={"X-API-Key": PDNS_API_KEY}, json=body, timeout=5)
        if reply.status_code >= 300:
            raise RuntimeError(f"pdns: {method} {path}: {reply.status_code} {reply.text}")


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def lab_knot() -> Iterator[Knot]:
    with Knot() as knot:
        yield knot


@pytest.fixture(scope="session")
def climbing_unbound(lab_bind, lab_knot) -> Iterator[Unbound]:
    """Unbound like lab_unbound, plus a stub for `test.` (on Knot) so lookups can climb to the
    TLD: lab_unbound answers SERVFAIL for `test.` itself, having no root to ask."""
    tld = {"test": f"{lab_knot.host}@{lab_knot.port}"}
    with Unbound(lab_bind, extra_stub_zones=tld) as unbound:
        yield unbound


@pytest.fixture(scope="session")
def lab_pdns() -> Iterator[PowerDns]:
    with PowerDns() as pdns:
        yield pdns


def bind_provider(bind, **overrides) -> Rfc2136Provider:
    options = {"server": f"{bind.host}:{bind.port}", "tsig_key_name": TSIG_KEY_NAME,
               "tsig_secret": TSIG_SECRET, "tsig_algorithm": TSIG_ALGORITHM}
    return Rfc2136Provider(TECH_ZONE, {**options, **overrides}, timeout=3)


def knot_provider(knot: Knot, key: str = KNOT_KEY, **overrides) -> Rfc2136Provider:
    algorithm, secret = knot.keys[key]
    options = {"server": f"{knot.host}:{knot.port}", "tsig_key_name": key,
               "tsig_secret": secret, "tsig_algorithm": algorithm}
    return Rfc2136Provider(knot.zone, {**options, **overrides}, timeout=3)


def pdns_rfc2136_provider(pdns: PowerDns, key: str = PDNS_TSIG_KEY,
                          **overrides) -> Rfc2136Provider:
    options = {"server": f"{pdns.host}:{pdns.port}", "tsig_key_name": key,
               "tsig_secret": _secret(key), "tsig_algorithm": "hmac-sha256"}
    return Rfc2136Provider(pdns.zone, {**options, **overrides}, timeout=3)


def pdns_provider(pdns: PowerDns, **overrides) -> PowerDnsProvider:
    options = {"api_url": pdns.api_url, "api_key": PDNS_API_KEY,
               "dns_server": f"{pdns.host}:{pdns.port}"}
    return PowerDnsProvider(pdns.zone, {**options, **overrides}, timeout=3)


WRONG_SECRET = base64.b64encode(b"not the right secret, 32 bytes!!").decode()


@dataclass
class ProviderCase:
    """A configured provider plus what the contract tests need to poke at it."""

    id: str
    provider: DnsProvider
    make: Callable[..., DnsProvider]     # overrides -> another provider on the same backend
    wrong_secret: dict[str, str]         # the overrides that break authentication
    secret_values: tuple[str, ...]       # strings that must never show up in messages
    manages_cnames: bool = False         # add_cname/remove_cname work (else DnsUnsupported)


@pytest.fixture(params=["rfc2136-bind", "rfc2136-knot", "rfc2136-pdns", "powerdns"])
def provider_case(request) -> ProviderCase:
    """Each backend, configured: the contract every provider must honour runs over all."""
    if request.param == "rfc2136-bind":
        bind = request.getfixturevalue("lab_bind")
        make = lambda **kw: bind_provider(bind, **kw)  # noqa: E731
        return ProviderCase(request.param, make(), make, {"tsig_secret": WRONG_SECRET},
                            (TSIG_SECRET, WRONG_SECRET), manages_cnames=True)
    if request.param == "rfc2136-knot":
        knot = request.getfixturevalue("lab_knot")
        make = lambda **kw: knot_provider(knot, **kw)  # noqa: E731
        return ProviderCase(request.param, make(), make, {"tsig_secret": WRONG_SECRET},
                            (knot.keys[KNOT_KEY][1], WRONG_SECRET), manages_cnames=True)
    pdns = request.getfixturevalue("lab_pdns")
    if request.param == "rfc2136-pdns":
        make = lambda **kw: pdns_rfc2136_provider(pdns, **kw)  # noqa: E731
        return ProviderCase(request.param, make(), make, {"tsig_secret": WRONG_SECRET},
                            (_secret(PDNS_TSIG_KEY), WRONG_SECRET), manages_cnames=True)
    make = lambda **kw: pdns_provider(pdns, **kw)  # noqa: E731
    return ProviderCase(request.param, make(), make, {"api_key": "wrong-api-key-123"},
                        (PDNS_API_KEY, "wrong-api-key-123"))


@pytest.fixture
def label() -> str:
    """A fresh owner name in the technical zone, so tests sharing a server never collide."""
    return f"t{uuid.uuid4().hex[:12]}.{TECH_ZONE}"
