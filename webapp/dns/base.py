"""The DNS provider interface and the name -> class registry.

A provider writes DNS-01 TXT values into the technical zone. Apex and wildcard share one
name and need two TXT values at once, so every provider adds and removes single values and
never replaces a whole RRset behind the caller's back. No Flask here.
"""
from __future__ import annotations

import importlib
import ipaddress
import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Iterable

import dns.exception
import dns.name

from webapp.errors import DnsError, DnsUnsupported
from webapp.netpolicy import PERMISSIVE, OutboundPolicy

log = logging.getLogger(__name__)

# Modules under webapp.dns whose classes register themselves on import (@register); a new
# provider module adds its name here. One that fails to import is listed as unavailable.
BUILTIN_MODULES: tuple[str, ...] = ("rfc2136", "powerdns", "builtin")

_registry: dict[str, type["DnsProvider"]] = {}
_load_errors: dict[str, str] = {}
_loaded = False
_load_lock = threading.Lock()


@dataclass(frozen=True)
class ProviderOption:
    """One setting a provider needs; `secret` ones are stored encrypted and never shown."""

    name: str
    label: str
    required: bool = False
    secret: bool = False
    help: str = ""
    default: str = ""
    choices: tuple[str, ...] = ()  # a closed list: the form shows a select


@dataclass
class Health:
    """Result of a provider's self-check, worded for the operator."""

    ok: bool
    message: str


class DnsProvider(ABC):
    """Writes TXT records into one zone; subclasses talk to one kind of DNS backend."""

    name: ClassVar[str]
    label: ClassVar[str]
    options: ClassVar[tuple[ProviderOption, ...]] = ()

    def __init__(self, zone: str, options: dict[str, str], *, timeout: float = 10.0,
                 policy: OutboundPolicy | None = None):
        self.zone = normalize_name(zone)
        if not self.zone:
            raise self.error("no zone configured")
        self.timeout = timeout
        # Where this provider may connect (purpose "dns"); the app passes its own policy.
        self.policy = policy or PERMISSIVE
        # Options arrive decrypted; keep defaults for anything left empty.
        self.settings = {opt.name: (options.get(opt.name) or opt.default).strip()
                         for opt in self.options}
        errors = self.validate_options(self.settings)
        if errors:
            # Field names and the validator's words only: validators never echo secrets.
            detail = "; ".join(f"{field}: {msg}" for field, msg in errors.items())
            raise self.error(f"invalid settings ({detail})")

    # -- validation ----------------------------------------------------------------------

    @classmethod
    def validate_options(cls, options: dict[str, str]) -> dict[str, str]:
        """Field -> message for every missing required option; subclasses add format checks."""
        errors = {}
        for opt in cls.options:
            if opt.required and not (options.get(opt.name) or opt.default or "").strip():
                errors[opt.name] = f"{opt.label} is required."
        return errors

    @classmethod
    def address_fields(cls, options: dict[str, str]) -> dict[str, str]:
        """Option name -> the host it makes SSL Manager connect to (judged when a zone is
        saved, against the outbound policy's "dns" purpose). None by default."""
        return {}

    # -- the interface -------------------------------------------------------------------

    @abstractmethod
    def add_txt(self, records: list[tuple[str, str]], ttl: int) -> None:
        """Add each (fqdn, value), keeping values already there; one update where possible."""

    @abstractmethod
    def remove_txt(self, records: list[tuple[str, str]]) -> None:
        """Remove exactly these (fqdn, value) pairs; other values at the names stay."""

    @abstractmethod
    def list_txt(self) -> dict[str, list[str]]:
        """Every TXT owner name in the zone (absolute, no trailing dot) -> its values."""

    @abstractmethod
    def health(self) -> Health:
        """Check the backend answers for the zone and accepts our credentials."""

    def authoritative_servers(self) -> list[tuple[str, int]]:
        """(ip, port) pairs to poll until they serve new TXT values before answering a challenge.

        Each provider returns the server it writes to; none known here.
        """
        return []

    # -- customer zones: the `_acme-challenge` CNAMEs SSL Manager makes on request ---------

    def add_cname(self, name: str, target: str, ttl: int) -> str | None:
        """Make `name` a CNAME to `target` only if nothing exists at `name`; None once written.

        Never overwrites: otherwise returns what holds the name (`target` itself when it
        already is that CNAME, another CNAME's target, or words for other records). Only a
        provider that can write this atomically does; the others raise DnsUnsupported.
        """
        raise self.cname_unsupported()

    def remove_cname(self, name: str, target: str) -> bool:
        """Delete the CNAME at `name` only while it points at `target`; False (nothing
        changed) when it no longer does. DnsUnsupported where add_cname is."""
        raise self.cname_unsupported()

    def cname_unsupported(self) -> DnsUnsupported:
        return DnsUnsupported(f"{self.name}: cannot manage customer CNAMEs (only rfc2136 "
                              "zones can)", hint="Create the CNAME at the zone's DNS host.")

    # -- helpers for subclasses ----------------------------------------------------------

    def error(self, message: str, **kw) -> DnsError:
        """A DnsError whose message starts with the provider name."""
        return DnsError(f"{self.name}: {message}", **kw)

    def failed_health(self, exc: Exception) -> Health:
        """Health(False) worded from an error: what went wrong, then what to do."""
        if isinstance(exc, DnsError):
            text, hint = exc.message, exc.hint
        else:  # a bug or an unforeseen library error: still say something useful
            text, hint = self.error(f"{type(exc).__name__}: {exc}").message, ""
        return Health(False, f"{text.rstrip('.')}. {hint}" if hint else text)

    def judged_address(self, host: str, what: str) -> str:
        """The address to connect to for `host`, judged by the outbound policy once; DnsError
        when the policy refuses it or the name does not resolve."""
        address, problem = self.policy.resolve(host, "dns")
        if problem:
            raise self.error(problem, hint="SSL Manager connects only where the outbound policy "
                                           "allows (README: Outbound addresses).")
        if address is None:
            raise self.error(f"cannot resolve {what} {host}")
        return address

    def check_in_zone(self, records: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Normalise names and refuse any outside our zone before anything is sent."""
        zone = dns.name.from_text(self.zone)
        checked = []
        for fqdn, value in records:
            name = normalize_name(fqdn)
            try:
                inside = dns.name.from_text(name).is_subdomain(zone)
            except dns.exception.DNSException as exc:
                raise self.error(f"{fqdn!r} is not a valid DNS name: {exc}") from None
            if not inside:
                raise self.error(f"{name} is outside the zone {self.zone}",
                                 hint="Records must be inside the technical zone.")
            if not isinstance(value, str) or not value:
                raise self.error(f"empty TXT value for {name}")
            checked.append((name, value))
        return checked


def normalize_name(name: str) -> str:
    """Lower-case DNS name without the trailing dot ('' for the root)."""
    return (name or "").strip().rstrip(".").lower()


def parse_host_port(text: str, default_port: int = 53) -> tuple[str, int]:
    """Split 'host', 'host:port', '[v6]:port' or a bare IPv6 address; raise ValueError."""
    text = (text or "").strip()
    if not text:
        raise ValueError("empty address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"missing ']' in {text!r}")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after ']' in {text!r}")
    elif text.count(":") > 1:  # bare IPv6 address, no port
        host, port_text = text, ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"no host in {text!r}")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    else:
        port = default_port
    if ":" in host:
        ipaddress.IPv6Address(host)  # ValueError if malformed
    elif all(part.isdigit() for part in host.split(".")):
        # Digits and dots are meant as an IPv4 address, never a host name: 999.1.1.1 is a typo.
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv4 address (four numbers from 0 to 255)") from None
    return host, port


# -- registry ------------------------------------------------------------------------------

def register(cls: type[DnsProvider]) -> type[DnsProvider]:
    """Class decorator: make a provider available under its `name`."""
    _registry[cls.name] = cls
    return cls


def _load_builtins() -> None:
    """Import the builtin provider modules once; a module that fails is logged, not fatal."""
    global _loaded
    if _loaded:
        return
    with _load_lock:  # scheduler threads ask at once: none may see a half-filled registry
        if _loaded:
            return
        for module in BUILTIN_MODULES:
            try:
                importlib.import_module(f"{__package__}.{module}")
            except Exception as exc:  # one broken provider must not take the app down
                _load_errors[module] = f"{type(exc).__name__}: {exc}"
                log.exception("DNS provider module %s failed to import", module)
        _loaded = True


def available_providers() -> dict[str, type[DnsProvider]]:
    """Name -> class of every provider that imported cleanly."""
    _load_builtins()
    return dict(_registry)


def unavailable_providers() -> dict[str, str]:
    """Module name -> import error for builtin providers that could not load."""
    _load_builtins()
    return dict(_load_errors)


def get_provider_class(name: str) -> type[DnsProvider]:
    """The provider class registered as `name`; DnsError naming the choices if unknown."""
    providers = available_providers()
    try:
        return providers[name]
    except KeyError:
        known = ", ".join(sorted(providers)) or "none"
        raise DnsError(f"unknown DNS provider {name!r} (available: {known})") from None
