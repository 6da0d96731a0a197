"""Outbound URLs SSL Manager fetches on an admin's word (CA directories, webhooks): refuse the
addresses that would turn it into a way into the internal network."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from flask import current_app

# Cloud metadata and link-local addresses are never a legitimate target, whatever the settings say.
ALWAYS_REFUSED = [ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"),
                  ipaddress.ip_network("fd00:ec2::254/128")]


def address_problem(url: str, *, what: str = "a CA", internal: str = "an internal CA") -> str | None:
    """Refuse URLs at link-local/metadata addresses always, private ones unless allowed.
    `what` and `internal` name the target in the message ("a webhook", "an internal receiver")."""
    return checked_address(url, what=what, internal=internal)[1]


def checked_address(url: str, *, what: str = "a CA",
                    internal: str = "an internal CA") -> tuple[str | None, str | None]:
    """Resolve the URL's host once and judge every address it has: (an address to connect to,
    None) or (None, why not). Connecting to that very address, rather than resolving the name
    again, leaves a DNS answer that changes in between (rebinding) nothing to change."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0])
                                           for info in socket.getaddrinfo(host, None)))
        except (socket.gaierror, UnicodeError):
            return None, None  # the caller's own request reports name resolution in its own words
    for address in addresses:
        # ::ffff:169.254.169.254 is the metadata address too: judge the IPv4 inside.
        address = getattr(address, "ipv4_mapped", None) or address
        if any(address.version == net.version and address in net for net in ALWAYS_REFUSED):
            return None, f"{host} is a link-local or cloud-metadata address ({address}); that is never {what}."
        if (address.is_private or address.is_loopback) and not current_app.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"]:
            return None, (f"{host} resolves to a private address ({address}). Set "
                          f"SSLMANAGER_ALLOW_PRIVATE_ADDRESSES=true to allow {internal}.")
    return str(addresses[0]), None
