"""PowerDNS provider specifics, against the real pdns_server from conftest."""
from __future__ import annotations

import pytest
import requests

from tests.dns.conftest import PDNS_API_KEY, pdns_provider
from tests.lab.proc import free_port
from webapp.dns.powerdns import PowerDnsProvider
from webapp.errors import DnsError

GOOD = {"api_url": "http://127.0.0.1:8081", "api_key": "k"}


def api_records(pdns, name: str) -> list[dict]:
    """The TXT records at name exactly as the API stores them."""
    zone = requests.get(f"{pdns.api_url}/api/v1/servers/localhost/zones/{pdns.zone}.",
                        headers={"X-API-Key": PDNS_API_KEY}, timeout=5).json()
    for rrset in zone["rrsets"]:
        if rrset["name"] == name + "." and rrset["type"] == "TXT":
            return sorted(rrset["records"], key=lambda r: r["content"])
    return []


def test_validate_accepts_good_settings():
    assert PowerDnsProvider.validate_options(GOOD) == {}


@pytest.mark.parametrize("url", ["127.0.0.1:8081", "ftp://127.0.0.1", "http://"])
def test_validate_flags_an_api_url_that_is_not_http(url):
    assert set(PowerDnsProvider.validate_options({**GOOD, "api_url": url})) == {"api_url"}


def test_validate_flags_a_dns_server_that_is_not_host_port():
    errors = PowerDnsProvider.validate_options({**GOOD, "dns_server": "127.0.0.1:x"})
    assert set(errors) == {"dns_server"}


def test_the_api_url_may_include_the_api_path(lab_pdns, label):
    provider = pdns_provider(lab_pdns, api_url=lab_pdns.api_url + "/api/v1/")
    assert provider.health().ok
    provider.add_txt([(label, "v")], ttl=60)
    assert provider.list_txt()[label] == ["v"]


def test_authoritative_servers_default_to_the_api_host_on_port_53():
    assert PowerDnsProvider("acme.tech.test", GOOD).authoritative_servers() == [("127.0.0.1", 53)]


def test_records_written_by_someone_else_survive_add_and_remove(lab_pdns, label):
    # The API replaces whole RRsets: we must write back what we found, disabled flag included.
    requests.patch(f"{lab_pdns.api_url}/api/v1/servers/localhost/zones/{lab_pdns.zone}.",
                   headers={"X-API-Key": PDNS_API_KEY}, timeout=5,
                   json={"rrsets": [{"name": label + ".", "type": "TXT", "ttl": 300,
                                     "changetype": "REPLACE",
                                     "records": [{"content": '"operator"', "disabled": True}]}]}
                   ).raise_for_status()
    provider = pdns_provider(lab_pdns)
    provider.add_txt([(label, "ours")], ttl=60)
    provider.remove_txt([(label, "ours")])
    assert api_records(lab_pdns, label) == [{"content": '"operator"', "disabled": True}]


def test_values_with_quotes_and_spaces_round_trip(lab_pdns, label):
    provider = pdns_provider(lab_pdns)
    value = 'a "quoted" value; with spaces'
    provider.add_txt([(label, value)], ttl=60)
    assert provider.list_txt()[label] == [value]
    provider.remove_txt([(label, value)])
    assert label not in provider.list_txt()


def test_a_missing_zone_is_reported_with_the_fix(lab_pdns):
    provider = PowerDnsProvider("not-here.test", {"api_url": lab_pdns.api_url,
                                                  "api_key": PDNS_API_KEY})
    health = provider.health()
    assert not health.ok
    assert "has no zone not-here.test" in health.message and "404" in health.message


def test_a_wrong_api_key_says_so(lab_pdns, label):
    with pytest.raises(DnsError, match=r"rejected the API key \(401") as caught:
        pdns_provider(lab_pdns, api_key="nope").add_txt([(label, "v")], ttl=60)
    assert "api-key" in caught.value.hint


def test_an_unreachable_api_is_named():
    url = f"http://127.0.0.1:{free_port()}"
    health = PowerDnsProvider("acme.tech.test", {**GOOD, "api_url": url}, timeout=1).health()
    assert not health.ok
    assert f"powerdns: cannot reach the API at {url}" in health.message


def test_authoritative_servers_resolve_a_host_name(lab_pdns):
    provider = pdns_provider(lab_pdns, dns_server=f"localhost:{lab_pdns.port}")
    assert provider.authoritative_servers() == [("127.0.0.1", lab_pdns.port)]
