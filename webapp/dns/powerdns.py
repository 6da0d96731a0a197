"""PowerDNS Authoritative through its HTTP API (/api/v1)."""
from __future__ import annotations

import threading
from collections import defaultdict
from urllib.parse import quote, urlsplit

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import requests

from ..netguard import RefusedAddress, guard
from .base import DnsProvider, Health, ProviderOption, parse_host_port, register
from .rfc2136 import txt_rdata, txt_text

# The API replaces whole RRsets, so adding one value is read-modify-write: two concurrent
# adds at one name (apex + wildcard, or two orders) would each write back the set they read
# and one value would vanish. Serialise per (API, server, zone) in this process. Several app
# nodes sharing one PowerDNS would need a cross-process claim (e.g. a row lock in our DB).
_zone_locks: dict[tuple[str, str, str], threading.Lock] = defaultdict(threading.Lock)
_zone_locks_guard = threading.Lock()


def _zone_lock(key: tuple[str, str, str]) -> threading.Lock:
    with _zone_locks_guard:
        return _zone_locks[key]


@register
class PowerDnsProvider(DnsProvider):
    """Adds and removes TXT values with one PATCH per call, under a per-zone lock."""

    name = "powerdns"
    label = "PowerDNS Authoritative (HTTP API)"
    options = (
        ProviderOption("api_url", "API URL", required=True,
                       help="The webserver address, e.g. http://127.0.0.1:8081"),
        ProviderOption("api_key", "API key", required=True, secret=True),
        ProviderOption("server_id", "Server ID", default="localhost"),
        ProviderOption("dns_server", "DNS server",
                       help="host:port where PowerDNS answers DNS queries, checked before "
                            "answering challenges (default: the API host, port 53)."),
    )

    def __init__(self, zone: str, options: dict[str, str], **kw):
        super().__init__(zone, options, **kw)
        base = self.settings["api_url"].rstrip("/")
        base = base.removesuffix("/api/v1").removesuffix("/api")
        self.api_url = base
        server_id = self.settings["server_id"]
        self.zone_url = (f"{base}/api/v1/servers/{quote(server_id, safe='')}"
                         f"/zones/{quote(self.zone + '.', safe='')}")
        self._lock = _zone_lock((base, server_id, self.zone))
        self._local = threading.local()

    @classmethod
    def validate_options(cls, options: dict[str, str]) -> dict[str, str]:
        errors = super().validate_options(options)
        url = (options.get("api_url") or "").strip()
        if url:
            try:
                parts = urlsplit(url)
            except ValueError:  # e.g. "http://[::1": an unclosed IPv6 bracket
                parts = urlsplit("")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                errors["api_url"] = "Use an http:// or https:// URL, e.g. http://127.0.0.1:8081"
        dns_server = (options.get("dns_server") or "").strip()
        if dns_server:
            try:
                parse_host_port(dns_server)
            except ValueError as exc:
                errors["dns_server"] = f"Use host:port, e.g. 192.0.2.53:53 ({exc})."
        return errors

    @classmethod
    def address_fields(cls, options: dict[str, str]) -> dict[str, str]:
        fields = {}
        try:
            host = urlsplit((options.get("api_url") or "").strip()).hostname
        except ValueError:
            host = None
        if host:
            fields["api_url"] = host
        try:
            fields["dns_server"] = parse_host_port(options.get("dns_server") or "")[0]
        except ValueError:
            pass
        return fields

    # -- interface -----------------------------------------------------------------------

    def add_txt(self, records: list[tuple[str, str]], ttl: int) -> None:
        """Merge the values into each name's RRset; one PATCH for every name."""
        records = self.check_in_zone(records)
        if not records:
            return
        with self._lock:
            current = self._txt_rrsets("add TXT records")
            changes = []
            for name, values in _group(records).items():
                existing = current.get(name, [])
                have = {value for value, _disabled in existing}
                merged = existing + [(v, False) for v in values if v not in have]
                changes.append(_replace(name, ttl, merged))
            self._patch(changes, "add TXT records")

    def remove_txt(self, records: list[tuple[str, str]]) -> None:
        """Drop exactly these values; a name left empty is deleted; one PATCH for every name."""
        records = self.check_in_zone(records)
        if not records:
            return
        with self._lock:
            current = self._txt_rrsets("remove TXT records", with_ttl=True)
            changes = []
            for name, values in _group(records).items():
                if name not in current:
                    continue
                ttl, existing = current[name]
                kept = [(v, d) for v, d in existing if v not in values]
                if len(kept) == len(existing):
                    continue
                changes.append(_replace(name, ttl, kept) if kept else
                               {"name": name + ".", "type": "TXT", "changetype": "DELETE"})
            if changes:
                self._patch(changes, "remove TXT records")

    def list_txt(self) -> dict[str, list[str]]:
        """Every TXT RRset of the zone (disabled records included)."""
        rrsets = self._txt_rrsets("list TXT records")
        return {name: sorted(v for v, _d in values) for name, values in sorted(rrsets.items())}

    def health(self) -> Health:
        """The API answers, accepts the key and has the zone."""
        try:
            zone = self._get_zone("check the API")
        except Exception as exc:
            return self.failed_health(exc)
        return Health(True, f"{self.api_url} accepts the API key and serves {self.zone} "
                            f"(kind {zone.get('kind', '?')}, serial {zone.get('serial', '?')}).")

    def authoritative_servers(self) -> list[tuple[str, int]]:
        """The DNS side of the same PowerDNS (the API writes straight into its backend)."""
        if self.settings["dns_server"]:
            host, port = parse_host_port(self.settings["dns_server"])
        else:
            host, port = urlsplit(self.api_url).hostname, 53
        return [(self.judged_address(host, "the DNS server name"), port)]

    # -- internals -----------------------------------------------------------------------

    def _session(self) -> requests.Session:
        """One session per thread (requests does not promise a shared one is thread-safe)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # The API key goes only where the outbound policy allows, to the address judged.
            guard(session, self.policy.judge("dns", what="a DNS API"))
            session.headers.update({"X-API-Key": self.settings["api_key"],
                                    "Accept": "application/json"})
            self._local.session = session
        return session

    def _request(self, method: str, step: str, **kw) -> requests.Response:
        try:
            response = self._session().request(method, self.zone_url, timeout=self.timeout,
                                               allow_redirects=False, **kw)
        except RefusedAddress as exc:
            raise self.error(f"not connecting to the API at {self.api_url}: {exc}", step=step,
                             hint="SSL Manager connects only where the outbound policy allows "
                                  "(README: Outbound addresses).") from None
        except requests.RequestException as exc:
            raise self.error(f"cannot reach the API at {self.api_url}: {type(exc).__name__}",
                             step=step, hint="Check the API URL and that PowerDNS runs with "
                                             "api=yes and webserver=yes.") from None
        if response.status_code < 300:
            return response
        said = _api_error(response)
        if response.status_code == 401:
            raise self.error(f"{self.api_url} rejected the API key (401 {said})", step=step,
                             hint="Check the API key (api-key in pdns.conf).")
        if response.status_code == 404:
            raise self.error(f"{self.api_url} has no zone {self.zone} on server "
                             f"{self.settings['server_id']} (404 {said})", step=step,
                             hint="Create the zone in PowerDNS or fix the zone/server ID.")
        raise self.error(f"{self.api_url} answered {response.status_code}: {said}", step=step)

    def _get_zone(self, step: str) -> dict:
        return self._request("GET", step).json()

    def _txt_rrsets(self, step: str, with_ttl: bool = False) -> dict:
        """name -> [(value, disabled)] (or (ttl, [...]) with_ttl) for every TXT RRset."""
        found = {}
        for rrset in self._get_zone(step).get("rrsets", []):
            if rrset.get("type") != "TXT":
                continue
            name = rrset["name"].rstrip(".").lower()
            values = [(_parse_txt(r["content"]), bool(r.get("disabled")))
                      for r in rrset.get("records", [])]
            found[name] = (rrset.get("ttl", 60), values) if with_ttl else values
        return found

    def _patch(self, rrsets: list[dict], step: str) -> None:
        self._request("PATCH", step, json={"rrsets": rrsets})


def _group(records: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for name, value in records:
        if value not in grouped[name]:
            grouped[name].append(value)
    return grouped


def _replace(name: str, ttl: int, values: list[tuple[str, bool]]) -> dict:
    """A REPLACE change carrying the whole RRset (the API has no 'add one record')."""
    return {"name": name + ".", "type": "TXT", "ttl": ttl, "changetype": "REPLACE",
            "records": [{"content": txt_rdata(v).to_text(), "disabled": d} for v, d in values]}


def _parse_txt(content: str) -> str:
    """The API's presentation format ('"a" "b"') back to one value."""
    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, content)
    except dns.exception.DNSException:
        return content.strip('"')
    return txt_text(rdata)


def _api_error(response: requests.Response) -> str:
    """PowerDNS puts its words in {"error": ...}; fall back to a short body."""
    try:
        said = response.json().get("error", "")
    except ValueError:
        said = ""
    return said or response.text.strip()[:200] or response.reason or ""
