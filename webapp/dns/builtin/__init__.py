"""The builtin DNS provider and SSL Manager's own authoritative server for its zones.

    zone.py       a zone's settings (SOA, NS, glue, listen addresses) and its tables
    provider.py   BuiltinProvider: TXT values as rows of sslm_dns_record
    snapshot.py   the builtin zones read into ready-to-send wire-format answers
    answer.py     one query's bytes -> one response's bytes (the hot path)
    server.py     DnsServer: UDP and TCP sockets, threads, the database refresh
    ratelimit.py  the token bucket per source address
    serving.py    `sslmanager dns serve`: one process, or one worker per core

Importing the package registers the provider (dns.base imports it by name). The server's
modules are imported only by whoever serves. No Flask here.
"""
from .provider import BuiltinProvider
from .zone import RECORDS, ZONES, ZoneConfig, parse_listen, parse_zone_options

__all__ = ["RECORDS", "ZONES", "BuiltinProvider", "ZoneConfig", "parse_listen",
           "parse_zone_options"]
