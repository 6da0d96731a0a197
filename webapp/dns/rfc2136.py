"""RFC 2136 dynamic updates signed with TSIG (BIND, Knot, PowerDNS, Windows DNS, ...)."""
from __future__ import annotations

import base64
import binascii
from collections import defaultdict

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.update
import dns.xfr
import dns.zone

from webapp.errors import DnsError

from .base import (
    DnsProvider,
    Health,
    ProviderOption,
    normalize_name,
    parse_host_port,
    register,
)

# What operators type -> dnspython's algorithm name.
ALGORITHMS = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-md5": dns.tsig.HMAC_MD5,
}


def txt_rdata(value: str) -> dns.rdtypes.ANY.TXT.TXT:
    """One TXT record holding `value`, split into 255-byte strings as the wire format needs."""
    raw = value.encode()
    chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)


def cname_rdata(target: str) -> dns.rdtypes.ANY.CNAME.CNAME:
    return dns.rdtypes.ANY.CNAME.CNAME(dns.rdataclass.IN, dns.rdatatype.CNAME,
                                       dns.name.from_text(target))


def txt_text(rdata) -> str:
    """A TXT record's strings joined back into one value."""
    return b"".join(rdata.strings).decode(errors="replace")


@register
class Rfc2136Provider(DnsProvider):
    """Adds and deletes single TXT records with TSIG-signed UPDATE messages over TCP."""

    name = "rfc2136"
    label = "RFC 2136 (dynamic update with TSIG)"
    options = (
        ProviderOption("server", "Server", required=True,
                       help="Primary server of the zone as host:port (port defaults to 53)."),
        ProviderOption("tsig_key_name", "TSIG key name", required=True),
        ProviderOption("tsig_secret", "TSIG secret", required=True, secret=True,
                       help="Base64, as in the server's key statement."),
        ProviderOption("tsig_algorithm", "TSIG algorithm", default="hmac-sha256", choices=tuple(ALGORITHMS),
                       help="As in the server's key statement."),
    )

    def __init__(self, zone: str, options: dict[str, str], **kw):
        super().__init__(zone, options, **kw)
        self.host, self.port = parse_host_port(self.settings["server"])
        self.server = self.settings["server"]
        algorithm = ALGORITHMS[self.settings["tsig_algorithm"].lower().rstrip(".")]
        self.key_name = self.settings["tsig_key_name"]
        self.key = dns.tsig.Key(self.key_name, self.settings["tsig_secret"], algorithm)
        self._address: str | None = None

    @classmethod
    def validate_options(cls, options: dict[str, str]) -> dict[str, str]:
        errors = super().validate_options(options)
        server = (options.get("server") or "").strip()
        if server and "server" not in errors:
            try:
                parse_host_port(server)
            except ValueError as exc:
                errors["server"] = f"Use host:port, e.g. 192.0.2.53:53 ({exc})."
        secret = (options.get("tsig_secret") or "").strip()
        if secret:
            try:
                if not base64.b64decode(secret, validate=True):
                    raise binascii.Error
            except (binascii.Error, ValueError):
                # Never quote the secret back.
                errors["tsig_secret"] = "Must be base64, as in the server's key statement."
        key_name = (options.get("tsig_key_name") or "").strip()
        if key_name:
            try:
                dns.name.from_text(key_name)
            except dns.exception.DNSException:
                errors["tsig_key_name"] = "Not a valid key name (letters, digits, '-', '.')."
        algorithm = (options.get("tsig_algorithm") or "hmac-sha256").strip().lower().rstrip(".")
        if algorithm not in ALGORITHMS:
            errors["tsig_algorithm"] = "Choose one of: " + ", ".join(ALGORITHMS) + "."
        return errors

    @classmethod
    def address_fields(cls, options: dict[str, str]) -> dict[str, str]:
        try:
            return {"server": parse_host_port(options.get("server") or "")[0]}
        except ValueError:
            return {}

    # -- interface -----------------------------------------------------------------------

    def add_txt(self, records: list[tuple[str, str]], ttl: int) -> None:
        """One UPDATE adding every value: add, never replace (apex and wildcard share a name)."""
        records = self.check_in_zone(records)
        if not records:
            return
        update = self._update_message()
        for fqdn, value in records:
            update.add(dns.name.from_text(fqdn), ttl, txt_rdata(value))
        self._send_update(update, "add TXT records")

    def remove_txt(self, records: list[tuple[str, str]]) -> None:
        """One UPDATE deleting exactly these values; absent values are no error."""
        records = self.check_in_zone(records)
        if not records:
            return
        update = self._update_message()
        for fqdn, value in records:
            update.delete(dns.name.from_text(fqdn), txt_rdata(value))
        self._send_update(update, "remove TXT records")

    def list_txt(self) -> dict[str, list[str]]:
        """TXT records from a TSIG-signed AXFR of the zone."""
        origin = dns.name.from_text(self.zone)
        query = dns.message.make_query(origin, dns.rdatatype.AXFR)
        query.use_tsig(self.key)
        zone = dns.zone.Zone(origin)
        step = "list TXT records (AXFR)"
        try:
            dns.query.inbound_xfr(self._where(), zone, query, port=self.port,
                                  timeout=self.timeout, lifetime=self.timeout * 3)
        except (dns.xfr.TransferError, dns.tsig.PeerBadKey) as exc:
            # Knot says BADKEY where BIND says REFUSED: the key may only lack the right.
            said = (dns.rcode.to_text(exc.rcode) if isinstance(exc, dns.xfr.TransferError)
                    else "NOTAUTH (BADKEY)")
            raise self.error(
                f"{self.server} refused the zone transfer of {self.zone} to TSIG key "
                f"{self.key_name} ({said})", step=step,
                hint=(f"Allow AXFR for the key (BIND: allow-transfer {{ key "
                      f"\"{self.key_name}\"; }}; Knot: an acl with action transfer) to list "
                      "records (adding and removing them does not need it), or check the key "
                      "name and algorithm."),
            ) from None
        except Exception as exc:
            raise self._transport_error(exc, step) from None
        found: dict[str, list[str]] = defaultdict(list)
        for name, _ttl, rdata in zone.iterate_rdatas(dns.rdatatype.TXT):
            owner = name.derelativize(origin).to_text(omit_final_dot=True).lower()
            found[owner].append(txt_text(rdata))
        return {name: sorted(values) for name, values in sorted(found.items())}

    def health(self) -> Health:
        """The server answers the zone's SOA authoritatively and accepts our key for updates."""
        try:
            serial = self._soa_serial()
            # An update whose only content is an always-true prerequisite changes nothing but
            # runs the server's whole TSIG and allow-update check (BIND and Knot both do).
            update = self._update_message()
            update.present(dns.name.from_text(self.zone), dns.rdatatype.SOA)
            self._send_update(update, "check TSIG key")
        except Exception as exc:  # DnsError from our helpers; anything else still gets words
            return self.failed_health(exc)
        return Health(True, f"{self.server} serves {self.zone} (SOA serial {serial}) and "
                            f"accepts updates signed with TSIG key {self.key_name}.")

    def authoritative_servers(self) -> list[tuple[str, int]]:
        """The configured primary: it has every update the moment it answers NOERROR."""
        return [(self._where(), self.port)]

    # -- customer CNAMEs -----------------------------------------------------------------

    def add_cname(self, name: str, target: str, ttl: int) -> str | None:
        """One UPDATE whose prerequisite "the name does not exist" the server checks
        atomically, so a name in use is never overwritten (a wildcard's answer does not count)."""
        owner, target = self._cname_names(name, target)
        current = self._cname_at(owner)
        if current == target:
            return target
        update = self._update_message()
        update.absent(owner)
        update.add(owner, ttl, cname_rdata(target))
        if self._send_update(update, "create CNAME", tolerate=(dns.rcode.YXDOMAIN,)):
            return current or "records made meanwhile"
        return None

    def remove_cname(self, name: str, target: str) -> bool:
        """One UPDATE deleting the CNAME on the prerequisite that it still points at target."""
        owner, target = self._cname_names(name, target)
        if self._cname_at(owner) != target:
            return False
        update = self._update_message()
        update.present(owner, cname_rdata(target))
        update.delete(owner, dns.rdatatype.CNAME)
        # NXRRSET: changed between the look-up and the update; still not ours to remove.
        return not self._send_update(update, "remove CNAME", tolerate=(dns.rcode.NXRRSET,))

    def _cname_names(self, name: str, target: str) -> tuple[dns.name.Name, str]:
        """The owner (refused outside the zone, before anything is sent) and the normalised
        target."""
        target = normalize_name(target)
        if not target:
            raise self.error(f"empty CNAME target for {name}")
        (owner, _), = self.check_in_zone([(name, target)])
        return dns.name.from_text(owner), target

    def _cname_at(self, owner: dns.name.Name) -> str | None:
        """What the primary has at owner: None if nothing, the CNAME target, or words."""
        host, port = self._where(), self.port
        query = dns.message.make_query(owner, dns.rdatatype.CNAME)
        query.flags &= ~dns.flags.RD
        try:
            reply, _ = dns.query.udp_with_fallback(query, host, port=port, timeout=self.timeout)
        except (OSError, dns.exception.DNSException) as exc:
            raise self.error(f"cannot look up {owner.to_text(omit_final_dot=True)} at "
                             f"{host}:{port}: {exc}") from None
        if reply.rcode() == dns.rcode.NXDOMAIN:
            return None
        for rrset in reply.answer:
            if rrset.rdtype == dns.rdatatype.CNAME and rrset.name == owner:
                return normalize_name(rrset[0].target.to_text())
        return "other records at that name"

    # -- internals -----------------------------------------------------------------------

    def _update_message(self) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(self.zone, keyring=self.key)

    def _where(self) -> str:
        """The server's IP address (dnspython only talks to addresses)."""
        if self._address is None:
            self._address = self.judged_address(self.host, "server name")
        return self._address

    def _soa_serial(self) -> int:
        """SOA serial as the server answers it, refusing non-authoritative answers."""
        query = dns.message.make_query(self.zone, dns.rdatatype.SOA)
        query.flags &= ~dns.flags.RD
        step = "query SOA"
        try:
            reply, _ = dns.query.udp_with_fallback(query, self._where(), port=self.port,
                                                   timeout=self.timeout)
        except Exception as exc:
            raise self._transport_error(exc, step) from None
        rcode = reply.rcode()
        if rcode != dns.rcode.NOERROR or not (reply.flags & dns.flags.AA):
            what = dns.rcode.to_text(rcode)
            raise self.error(
                f"{self.server} does not serve the zone {self.zone} ({what}"
                f"{'' if reply.flags & dns.flags.AA else ', not authoritative'})",
                step=step,
                hint="Check the zone name and that the server is its primary.")
        soa = reply.get_rrset(reply.answer, dns.name.from_text(self.zone),
                              dns.rdataclass.IN, dns.rdatatype.SOA)
        if not soa:
            raise self.error(f"{self.zone} is a name inside a zone on {self.server}, not a zone "
                             "of its own (no SOA record there)", step=step,
                             hint="Enter the zone exactly as the server defines it.")
        return soa[0].serial

    def _send_update(self, update: dns.update.UpdateMessage, step: str, *,
                     tolerate: tuple[int, ...] = ()) -> int:
        """Send over TCP (updates for many names outgrow UDP) and turn failures into words.
        Returns 0 (NOERROR) or a `tolerate`d rcode: a prerequisite the caller expects to fail."""
        try:
            reply = dns.query.tcp(update, self._where(), port=self.port, timeout=self.timeout)
        except Exception as exc:
            raise self._transport_error(exc, step) from None
        rcode = reply.rcode()
        if rcode == dns.rcode.NOERROR or rcode in tolerate:
            return rcode
        text = dns.rcode.to_text(rcode)
        hints = {
            dns.rcode.REFUSED: (f"the server refused the update of {self.zone}",
                                f"Grant key {self.key_name} updates of {self.zone} "
                                f"(BIND: allow-update {{ key \"{self.key_name}\"; }}; or an "
                                "update-policy rule)."),
            dns.rcode.NOTAUTH: (f"the server is not authoritative for {self.zone}",
                                "Check the zone name and point the provider at the zone's "
                                "primary server."),
            dns.rcode.NOTZONE: (f"a name is outside the zone {self.zone}",
                                "Check the zone name."),
            dns.rcode.SERVFAIL: ("the server failed to apply the update",
                                 "See the DNS server's log (journal file permissions?)."),
        }
        what, hint = hints.get(rcode, ("the server rejected the update",
                                       "See the DNS server's log."))
        raise self.error(f"{self.server} answered {text}: {what}", step=step, hint=hint)

    def _transport_error(self, exc: Exception, step: str):
        """Words for TSIG rejections, timeouts and connection failures (never the secret)."""
        if isinstance(exc, DnsError):
            return exc
        key = f"TSIG key {self.key_name} ({self.settings['tsig_algorithm']})"
        check = "Check the TSIG key name, secret and algorithm against the server's key."
        reach = "Check the address, port and firewall."
        if isinstance(exc, dns.tsig.PeerBadKey):
            what = (f"answered NOTAUTH (BADKEY): it does not know {key} or does not allow it "
                    f"for {self.zone}")
        elif isinstance(exc, dns.tsig.PeerBadSignature):
            what = (f"answered NOTAUTH (BADSIG): the signature made with {key} does not "
                    "verify, so the secret differs from the server's")
        elif isinstance(exc, dns.tsig.PeerBadTime):
            what = "answered NOTAUTH (BADTIME): the clocks differ by more than 5 minutes"
            check = "Synchronise both clocks (NTP)."
        elif isinstance(exc, dns.tsig.PeerError):
            what = f"rejected the TSIG signature: {exc}"
        elif isinstance(exc, (dns.tsig.BadSignature, dns.message.UnknownTSIGKey,
                              dns.tsig.BadKey)):
            what = f"sent an answer not signed with {key}: {exc}"
        elif isinstance(exc, dns.exception.FormError) and "TSIG" in str(exc):
            # PowerDNS answers an unknown key with an unsigned reply, not BADKEY.
            what = f"sent an unsigned answer ({exc}): it does not know {key}"
        elif isinstance(exc, dns.exception.Timeout):
            what, check = f"did not answer within {self.timeout:g} s", reach
        elif isinstance(exc, OSError):
            what, check = f"cannot be reached: {exc.strerror or exc}", reach
        else:
            what, check = f"failed: {type(exc).__name__}: {exc}", ""
        return self.error(f"{self.server} {what}", step=step, hint=check)
