"""The app's outbound-address policy (webapp/netpolicy.py) built from its settings:
SSLMANAGER_ALLOW_PRIVATE_ADDRESSES for every purpose, SSLMANAGER_OUTBOUND_ALLOW_<PURPOSE> for
one. Every outbound connection asks this policy, at save time and again at connect time."""
from __future__ import annotations

from flask import current_app

from ..errors import ConfigError
from ..netpolicy import PURPOSES, OutboundPolicy, parse_networks


def policy() -> OutboundPolicy:
    """The policy the current app's settings make (ConfigError for a bad allow-list entry)."""
    cfg = current_app.config
    try:
        allow = {purpose: parse_networks(cfg.get(setting) or [], setting)
                 for purpose, (setting, _what) in PURPOSES.items()}
    except ValueError as exc:
        raise ConfigError(str(exc), hint="Use CIDRs such as 10.0.0.0/8 or 192.0.2.25/32.") from None
    return OutboundPolicy(allow_private=bool(cfg["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"]), allow=allow)


def address_problem(url: str, *, purpose: str = "acme") -> str | None:
    """Why SSL Manager may not fetch `url` for `purpose` (None: it may)."""
    return checked_address(url, purpose=purpose)[1]


def checked_address(url: str, *, purpose: str = "acme") -> tuple[str | None, str | None]:
    """Resolve the URL's host once and judge every address it has: (an address to connect to,
    None), (None, why not), or (None, None) when the name does not resolve."""
    return policy().judge_url(url, purpose)
