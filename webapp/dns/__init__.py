"""DNS layer: providers that write DNS-01 TXT values into the technical zone, and checks
(CNAME delegation, CAA, propagation) for the pages and the issuance service. No Flask here."""
from .base import (
    DnsProvider,
    Health,
    ProviderOption,
    available_providers,
    get_provider_class,
    unavailable_providers,
)

__all__ = [
    "DnsProvider",
    "Health",
    "ProviderOption",
    "available_providers",
    "get_provider_class",
    "unavailable_providers",
]
