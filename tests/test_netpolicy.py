"""The outbound-address policy on its own: every way of writing an address ends at the same
verdict as the address it stands for (decimal, octal, hex and short IPv4 forms as the resolver
reads them, IPv4-mapped, IPv4-compatible, NAT64, 6to4, trailing-dot names), and each purpose's
allow-list opens only what it lists."""
from __future__ import annotations

import ipaddress

import pytest

from webapp.netpolicy import PURPOSES, OutboundPolicy, classify, parse_networks

STRICT = OutboundPolicy()
LAB = OutboundPolicy(allow_private=True)

# host as typed -> (verdict, the address the verdict is about)
TABLE = {
    # loopback in every spelling
    "127.0.0.1": ("private", "127.0.0.1"),
    "2130706433": ("private", "127.0.0.1"),          # one decimal number
    "0177.0.0.1": ("private", "127.0.0.1"),          # octal
    "0x7f.0.0.1": ("private", "127.0.0.1"),          # hex
    "0x7f000001": ("private", "127.0.0.1"),
    "127.1": ("private", "127.0.0.1"),               # short form
    "localhost.": ("private", "127.0.0.1"),          # trailing dot
    "127.0.0.1.": ("private", "127.0.0.1"),
    "::1": ("private", "::1"),
    "[::1]": ("private", "::1"),
    "::ffff:127.0.0.1": ("private", "127.0.0.1"),    # IPv4-mapped
    "::127.0.0.1": ("private", "127.0.0.1"),         # IPv4-compatible
    "64:ff9b::7f00:1": ("private", "127.0.0.1"),     # NAT64 (RFC 6052)
    "2002:7f00:1::": ("private", "127.0.0.1"),       # 6to4
    "0.0.0.0": ("private", "0.0.0.0"),
    # private networks
    "10.1.2.3": ("private", "10.1.2.3"),
    "0x0a.1.2.3": ("private", "10.1.2.3"),
    "172.16.0.1": ("private", "172.16.0.1"),
    "192.168.1.10": ("private", "192.168.1.10"),
    "100.64.0.1": ("private", "100.64.0.1"),         # carrier-grade NAT
    "100.127.255.254": ("private", "100.127.255.254"),
    "fd12:3456::1": ("private", "fd12:3456::1"),
    "fec0::1": ("private", "fec0::1"),               # deprecated site-local
    "64:ff9b:1::1": ("private", "64:ff9b:1::1"),     # local-use NAT64
    "::ffff:10.0.0.1": ("private", "10.0.0.1"),
    # never allowed: link-local, metadata, multicast
    "169.254.169.254": ("refused", "169.254.169.254"),
    "2852039166": ("refused", "169.254.169.254"),
    "0xa9.0xfe.0xa9.0xfe": ("refused", "169.254.169.254"),
    "0251.0376.0251.0376": ("refused", "169.254.169.254"),
    "169.254.43518": ("refused", "169.254.169.254"),  # short form of the metadata address
    "::ffff:169.254.169.254": ("refused", "169.254.169.254"),
    "::169.254.169.254": ("refused", "169.254.169.254"),
    "64:ff9b::a9fe:a9fe": ("refused", "169.254.169.254"),
    "64:ff9b:1:a9fe:a9:fe00::": ("refused", "169.254.169.254"),  # local-use NAT64, /48 layout
    "2002:a9fe:a9fe::1": ("refused", "169.254.169.254"),
    "100.100.100.200": ("refused", "100.100.100.200"),  # Alibaba Cloud metadata
    "fd00:ec2::254": ("refused", "fd00:ec2::254"),
    "fe80::1": ("refused", "fe80::1"),
    "fe80::1%lo": ("refused", "fe80::1"),
    "224.0.0.1": ("refused", "224.0.0.1"),
    "239.255.255.250": ("refused", "239.255.255.250"),
    "ff02::1": ("refused", "ff02::1"),
    "::ffff:224.0.0.251": ("refused", "224.0.0.251"),
    # public
    "8.8.8.8": ("public", "8.8.8.8"),
    "134744072": ("public", "8.8.8.8"),
    "2606:4700:4700::1111": ("public", "2606:4700:4700::1111"),
    "64:ff9b::808:808": ("public", "64:ff9b::808:808"),  # NAT64 of a public address: fine
}


@pytest.mark.parametrize("host", TABLE)
def test_every_spelling_gets_the_verdict_of_the_address_it_stands_for(host):
    verdict, about = TABLE[host]
    address, problem = STRICT.resolve(host, "smtp")
    if verdict == "public":
        assert problem is None and address == about
        return
    assert address is None and problem and about in problem, problem
    if verdict == "refused":
        assert "never an SMTP server" in problem
        assert LAB.resolve(host, "smtp") == (None, problem)  # whatever the settings say
    else:
        assert "SSLMANAGER_OUTBOUND_ALLOW_SMTP" in problem and "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES" in problem
        allowed, none = LAB.resolve(host, "smtp")
        assert allowed and none is None


def test_classify_judges_the_embedded_ipv4_address():
    assert classify(ipaddress.ip_address("64:ff9b::a9fe:a9fe"))[:2] == (
        "refused", ipaddress.ip_address("169.254.169.254"))
    assert classify(ipaddress.ip_address("::7f00:1"))[0] == "private"


def test_a_purpose_allow_list_opens_its_networks_for_that_purpose_only():
    policy = OutboundPolicy(allow={"smtp": parse_networks(["10.0.0.0/8", "127.0.0.1/32"], "X")})
    assert policy.resolve("10.9.9.9", "smtp") == ("10.9.9.9", None)
    assert policy.resolve("::ffff:10.9.9.9", "smtp") == ("::ffff:a09:909", None)
    assert policy.resolve("0177.0.0.1", "smtp") == ("127.0.0.1", None)
    assert policy.resolve("127.0.0.2", "smtp")[1]                    # not listed
    assert "SSLMANAGER_OUTBOUND_ALLOW_DNS" in policy.resolve("10.9.9.9", "dns")[1]  # another purpose
    wide = OutboundPolicy(allow={"smtp": parse_networks(["0.0.0.0/0", "::/0"], "X")})
    assert "never" in wide.resolve("169.254.169.254", "smtp")[1]     # no list opens metadata


def test_an_allow_list_entry_that_is_no_network_names_the_setting():
    with pytest.raises(ValueError, match="SSLMANAGER_OUTBOUND_ALLOW_DNS: 'ten' is not"):
        parse_networks(["ten"], "SSLMANAGER_OUTBOUND_ALLOW_DNS")


def test_a_name_that_does_not_resolve_is_neither_allowed_nor_refused():
    assert STRICT.resolve("nonexistent.invalid", "webhook") == (None, None)


def test_urls_are_judged_by_their_host():
    assert STRICT.judge("acme")("https://[::ffff:169.254.169.254]/dir")[1]
    assert STRICT.judge_url("https://2130706433:8443/dir", "acme")[1]
    assert STRICT.judge_url("https://8.8.8.8/dir", "acme") == ("8.8.8.8", None)
    assert set(PURPOSES) == {"acme", "webhook", "smtp", "dns", "deploy", "oidc"}
