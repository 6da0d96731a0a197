"""BIND9 (authoritative, RFC 2136 + TSIG) and Unbound (recursive, stub zones) for the lab."""

from __future__ import annotations

from collections.abc import Iterable

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsigkeyring
import dns.update

from .proc import ManagedServer, free_port, require_binary

TSIG_KEY_NAME = "acme-key"
TSIG_ALGORITHM = "hmac-sha256"
# Fixed so that configs, apps under test and humans running nsupdate all agree on it.
TSIG_SECRET = "PPrTVvPSJJTvPuqV3unxcjOsOPKZpxdNHhEDJOtcPz8="  # 32 random-looking bytes

TECH_ZONE = "acme.tech.test"
CUSTOMER_ZONES = ("customer.test", "other.test", "caa.test", "wild.test")

RecordSpec = tuple  # (name, ttl, rdtype, rdata-text); see Bind.update


class DNSUpdateError(RuntimeError):
    """BIND answered an RFC 2136 update with something other than NOERROR."""


def _absolute(name: str, zone: str) -> dns.name.Name:
    """Owner name as absolute: '@' is the apex; names inside `zone` are taken as full names;
    anything else (e.g. '_acme-challenge') is relative to `zone`."""
    origin = dns.name.from_text(zone)
    if name in ("@", ""):
        return origin
    parsed = dns.name.from_text(name)  # absolute, relative to the root
    if parsed.is_subdomain(origin):
        return parsed
    return dns.name.from_text(name.rstrip("."), origin)


class Bind(ManagedServer):
    """Authoritative BIND9 serving TECH_ZONE + CUSTOMER_ZONES, all dynamic via the TSIG key."""

    name = "bind"
    host = "127.0.0.1"

    def __init__(self, zones: Iterable[str] = (TECH_ZONE, *CUSTOMER_ZONES)) -> None:
        super().__init__()
        self.zones: tuple[str, ...] = tuple(zones)
        self.port = free_port()
        self.keyring = dns.tsigkeyring.from_text({TSIG_KEY_NAME: (TSIG_ALGORITHM, TSIG_SECRET)})

    # -- process -------------------------------------------------------------------------

    def _launch(self) -> None:
        named = require_binary("/usr/sbin/named", "bind9")
        # named runs as root (-u root) but drops capabilities; a world-writable workdir keeps
        # it able to create its .jnl journal files whatever it ends up as.
        self.workdir.chmod(0o777)
        for zone in self.zones:
            path = self.workdir / f"{zone}.zone"
            path.write_text(self._zone_text(zone))
            path.chmod(0o666)
        conf = self.workdir / "named.conf"
        conf.write_text(self._config())
        # -g: foreground, log to stderr; -4: loopback IPv4 only.
        self._spawn([named, "-g", "-4", "-c", str(conf), "-u", "root"])

    def _ready(self) -> bool:
        # Zones load after the listener opens: ready only when every zone answers its SOA.
        return all(self._serves_soa(zone) for zone in self.zones)

    def _serves_soa(self, zone: str) -> bool:
        """True if this server answers NOERROR with the SOA of `zone`."""
        reply = self.query(zone, "SOA", timeout=0.5)
        return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)

    def _config(self) -> str:
        """named.conf: loopback only, no recursion, no rndc, one dynamic primary per zone."""
        wd = self.workdir
        zones = "".join(
            f'zone "{z}" {{ type primary; file "{wd}/{z}.zone"; '
            f'allow-update {{ key "{TSIG_KEY_NAME}"; }}; }};\n'
            for z in self.zones
        )
        return f"""\
options {{
    directory "{wd}";
    pid-file "{wd}/named.pid";
    session-keyfile "{wd}/session.key";
    managed-keys-directory "{wd}";
    listen-on port {self.port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-query {{ any; }};
    allow-transfer {{ any; }};
    // Keep answers free of authority NS records: they name port-53 servers that do not
    // exist here, and a resolver must keep using its stub address instead.
    minimal-responses yes;
}};
// Without this named opens rndc on the fixed 127.0.0.1:953 (Debian ships rndc.key),
// shared by every instance.
controls {{ }};
key "{TSIG_KEY_NAME}" {{ algorithm {TSIG_ALGORITHM}; secret "{TSIG_SECRET}"; }};
{zones}"""

    @staticmethod
    def _zone_text(zone: str) -> str:
        """Minimal zone: SOA (1 s negative TTL), NS and its loopback glue."""
        return f"""\
$ORIGIN {zone}.
$TTL 60
@   IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 1
@   IN NS  ns.{zone}.
ns  IN A   127.0.0.1
"""

    # -- DNS helpers ---------------------------------------------------------------------

    def zone_of(self, name: str) -> str:
        """The most specific served zone containing `name`."""
        absname = dns.name.from_text(name)
        matches = [z for z in self.zones if absname.is_subdomain(dns.name.from_text(z))]
        if not matches:
            raise ValueError(f"{name} is in none of {self.zones}")
        return max(matches, key=len)

    def update(
        self, zone: str, *, add: Iterable[RecordSpec] = (), delete: Iterable[RecordSpec] = ()
    ) -> dns.message.Message:
        """Send one TSIG-signed RFC 2136 update: deletes first, then adds.

        Each record is (name, ttl, rdtype, rdata-text). Names are absolute if inside `zone`
        (else relative to it; '@' is the apex); names inside rdata are always absolute.
        In `delete`, ttl is ignored, rdata None deletes the RRset, rdtype None the whole name.
        """
        msg = dns.update.UpdateMessage(
            zone, keyring=self.keyring, keyname=TSIG_KEY_NAME, keyalgorithm=TSIG_ALGORITHM
        )
        for name, _ttl, rdtype, text in delete:
            owner = _absolute(name, zone)
            if rdtype is None:
                msg.delete(owner)
            elif text is None:
                msg.delete(owner, rdtype)
            else:
                msg.delete(owner, _rdata(rdtype, text))
        for name, ttl, rdtype, text in add:
            msg.add(_absolute(name, zone), ttl, _rdata(rdtype, text))
        reply = dns.query.tcp(msg, self.host, port=self.port, timeout=5)
        if reply.rcode() != dns.rcode.NOERROR:
            raise DNSUpdateError(f"update of {zone} refused: {dns.rcode.to_text(reply.rcode())}")
        return reply

    def query(self, name: str, rdtype, timeout: float = 2.0) -> dns.message.Message:
        """Query this server directly over UDP, retrying over TCP if truncated."""
        return query(self.host, self.port, name, rdtype, timeout)

    def set_cname(self, name: str, target: str, ttl: int = 60) -> None:
        """Make `name` a CNAME to `target`, replacing whatever records were there."""
        zone = self.zone_of(name)
        self.update(zone, delete=[(name, 0, None, None)], add=[(name, ttl, "CNAME", target)])

    def clear(self, name: str) -> None:
        """Delete every record at `name`."""
        self.update(self.zone_of(name), delete=[(name, 0, None, None)])

    def txt(self, name: str) -> list[str]:
        """TXT strings at `name` as served by this server (convenience for tests)."""
        return txt_values(self.query(name, "TXT"))


class Unbound(ManagedServer):
    """Recursive Unbound with a stub zone per Bind zone (plus extra_stub_zones).

    Listens on 127.0.0.1 and a free port unless host/port say otherwise: a client that can
    only ask port 53 (acme2certifier) gets one on its own random loopback address, see
    proc.free_loopback_address().
    """

    name = "unbound"

    def __init__(
        self,
        bind: Bind | None = None,
        *,
        extra_stub_zones: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        super().__init__()
        self.host = host
        self.port = port or free_port()
        stubs = {z: f"{bind.host}@{bind.port}" for z in bind.zones} if bind else {}
        stubs.update(extra_stub_zones or {})
        self.stub_zones: dict[str, str] = stubs

    def _launch(self) -> None:
        unbound = require_binary("/usr/sbin/unbound", "unbound")
        conf = self.workdir / "unbound.conf"
        conf.write_text(self._config())
        self._spawn([unbound, "-d", "-c", str(conf)])

    def _ready(self) -> bool:
        # 'localhost.' is answered from Unbound's built-in local zone: no upstream needed.
        return self.query("localhost.", "A", timeout=0.5).rcode() == dns.rcode.NOERROR

    def _config(self) -> str:
        """unbound.conf for the lab; every setting here was needed, see servers.py pitfalls."""
        stubs = "".join(
            f'stub-zone:\n    name: "{zone}."\n    stub-addr: {addr}\n    stub-no-cache: yes\n'
            for zone, addr in self.stub_zones.items()
        )
        return f"""\
server:
    interface: {self.host}
    port: {self.port}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{self.workdir}"
    pidfile: "{self.workdir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    # The stubs live on 127.0.0.1, which Unbound refuses to query by default.
    do-not-query-localhost: no
    # Every lookup must see the current zone contents (tests change them constantly).
    cache-max-ttl: 0
    cache-max-negative-ttl: 0
    # No validator: the lab zones are unsigned and there is no root to chain to.
    module-config: "iterator"
    # .test is special-use: by default Unbound answers NXDOMAIN for it locally.
    local-zone: "test." nodefault
    domain-insecure: "test."
    qname-minimisation: no
    # Keep Unbound's random source ports out of the range free_port() hands out.
    outgoing-port-avoid: "0-32767"
remote-control:
    control-enable: no
{stubs}"""

    def query(self, name: str, rdtype, timeout: float = 5.0) -> dns.message.Message:
        """Resolve through this Unbound (UDP, TCP if truncated)."""
        return query(self.host, self.port, name, rdtype, timeout)

    def txt(self, name: str) -> list[str]:
        """TXT strings at `name` as resolved by Unbound, following CNAMEs."""
        return txt_values(self.query(name, "TXT"))


def _rdata(rdtype, text: str) -> dns.rdata.Rdata:
    """Parse rdata text with names relative to the root, i.e. always absolute."""
    # relativize=False: otherwise dnspython makes names relative to the root and the
    # update message then appends the zone to them (x.acme.tech.test.customer.test).
    return dns.rdata.from_text(
        dns.rdataclass.IN, rdtype, text, origin=dns.name.root, relativize=False
    )


def query(host: str, port: int, name: str, rdtype, timeout: float) -> dns.message.Message:
    """One DNS query to host:port over UDP, falling back to TCP on truncation."""
    request = dns.message.make_query(name, rdtype)
    reply, _used_tcp = dns.query.udp_with_fallback(request, host, port=port, timeout=timeout)
    return reply


def txt_values(reply: dns.message.Message) -> list[str]:
    """All TXT strings in an answer (each record's strings joined), sorted."""
    values = []
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            values += [b"".join(rd.strings).decode() for rd in rrset]
    return sorted(values)
