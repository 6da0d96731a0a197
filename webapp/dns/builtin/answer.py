"""The builtin server's hot path: one query's bytes to one response's bytes, from a Snapshot.

It never runs dnspython: it checks the header, walks the question's labels (no compression
pointers are legal there), reads an OPT record if present, and joins header + the client's
own question bytes (keeping its 0x20 case) + the snapshot's precomputed sections. Anything
malformed is dropped (too short to answer, or a response) or gets a header-only FORMERR;
ANY gets one synthesized HINFO (RFC 8482); UDP answers are capped at min(client payload,
1232) with TC set beyond.
"""
from __future__ import annotations

import struct

from .snapshot import ANY_ANSWER, EDNS_PAYLOAD, Snapshot

OPT, IXFR, AXFR, ANY = 41, 251, 252, 255
NOERROR, FORMERR, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 3, 4, 5
QR, AA, TC = 0x80, 0x04, 0x02  # bits of the third header byte

_COUNTS = struct.Struct("!HHHH")
_TYPE_CLASS = struct.Struct("!HH")
# OPT after its root owner: type, payload size, extended rcode, version, flags, rdlength
_OPT_FIXED = struct.Struct("!HHBBHH")
_POINTER = struct.Struct("!H")


def _opt_rr(do: bool, ext_rcode: int = 0) -> bytes:
    return b"\x00" + _OPT_FIXED.pack(OPT, EDNS_PAYLOAD, ext_rcode, 0, 0x8000 if do else 0, 0)


_OPT_PLAIN, _OPT_DO = _opt_rr(False), _opt_rr(True)
_OPT_BADVERS = {False: _opt_rr(False, 1), True: _opt_rr(True, 1)}  # rcode 16 = 1 << 4 | 0


def respond(snapshot: Snapshot, data: bytes, udp: bool, truncate: bool) -> bytes | None:
    """The wire response to one query from `snapshot`, or None to send nothing. truncate: an
    empty TC reply (the rate limit's slip). No cache here: DnsServer.answer keeps one."""
    n = len(data)
    if n < 12 or data[2] & QR:  # unanswerable, or a response: never reply to those
        return None
    b2 = QR | (data[2] & 0x79)   # opcode and RD copied
    b3 = data[3] & 0x10          # CD copied; RA, AD stay clear
    if data[2] & 0x78:           # not a QUERY (UPDATE, NOTIFY, ...)
        return data[:2] + bytes((b2, b3 | NOTIMP)) + b"\0" * 8
    qd, an, ns, ar = _COUNTS.unpack_from(data, 4)
    if qd != 1 or an or ns or ar > 1:
        return data[:2] + bytes((b2, b3 | FORMERR)) + b"\0" * 8
    pos, labels = 12, []
    while True:
        if pos >= n:
            return data[:2] + bytes((b2, b3 | FORMERR)) + b"\0" * 8
        length = data[pos]
        if length == 0:
            break
        if length > 63:  # a compression pointer (or reserved label type) in a question
            return data[:2] + bytes((b2, b3 | FORMERR)) + b"\0" * 8
        labels.append(pos)
        pos += length + 1
    pos += 1
    qend = pos + 4
    if pos > 12 + 255 or qend > n:
        return data[:2] + bytes((b2, b3 | FORMERR)) + b"\0" * 8
    qtype, qclass = _TYPE_CLASS.unpack_from(data, pos)
    limit = 512 if udp else 65535
    opt = b""
    if ar:
        if qend + 11 > n or data[qend] != 0:
            return data[:2] + bytes((b2, b3 | FORMERR)) + b"\0" * 8
        rtype, payload, _, version, eflags, rdlen = _OPT_FIXED.unpack_from(data, qend + 1)
        if rtype != OPT or qend + 11 + rdlen != n:
            return data[:2] + bytes((b2, b3 | FORMERR)) + b"\0" * 8
        if version:
            return (data[:2] + bytes((b2, b3)) + _COUNTS.pack(1, 0, 0, 1)
                    + data[12:qend] + _OPT_BADVERS[bool(eflags & 0x8000)])
        opt = _OPT_DO if eflags & 0x8000 else _OPT_PLAIN
        if udp:
            limit = min(max(payload, 512), EDNS_PAYLOAD)
    elif qend != n:
        return data[:2] + bytes((b2, b3 | FORMERR)) + b"\0" * 8
    question = data[12:qend]
    arcount = 1 if opt else 0

    zones = snapshot.zones
    name = data[12:pos].lower()
    zone = None
    for off in labels:  # longest match first
        zone = zones.get(name[off - 12:])
        if zone is not None:
            break
    if zone is None or qclass != 1 or qtype == AXFR or qtype == IXFR:
        return (data[:2] + bytes((b2, b3 | REFUSED)) + _COUNTS.pack(1, 0, 0, arcount)
                + question + opt)
    if truncate:
        return (data[:2] + bytes((b2 | AA | TC, b3)) + _COUNTS.pack(1, 0, 0, arcount)
                + question + opt)
    node = zone.nodes.get(name)
    if node is not None:
        rrset = node.get(qtype)
        if rrset is None and qtype == ANY:
            rrset = ANY_ANSWER  # RFC 8482: one HINFO, not everything
        if rrset is not None:
            response = (data[:2] + bytes((b2 | AA, b3))
                        + _COUNTS.pack(1, rrset.count, 0, rrset.extra_count + arcount)
                        + question + rrset.wire + rrset.extra + opt)
            if len(response) > limit:
                return (data[:2] + bytes((b2 | AA | TC, b3)) + _COUNTS.pack(1, 0, 0, arcount)
                        + question + opt)
            return response
        rcode = NOERROR
    else:
        rcode = NOERROR if name in zone.empty else NXDOMAIN
    # Negative answer: the SOA in authority, its owner a pointer to the apex in the question.
    return (data[:2] + bytes((b2 | AA, b3 | rcode)) + _COUNTS.pack(1, 0, 1, arcount)
            + question + _POINTER.pack(0xC000 | off) + zone.negative_soa + opt)
