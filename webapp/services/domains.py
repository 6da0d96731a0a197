"""Certificate names: IDNA to punycode, the checks a CA would make, base domains, and the
stable CNAME label per (domain, technical zone)."""
from __future__ import annotations

import base64
import ipaddress
import os
import re

import idna
from publicsuffixlist import PublicSuffixList
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import db
from ..models import CnameLabel

_psl: list[PublicSuffixList] = []  # loaded on first use (tens of ms): CLI processes may not need it


def _public_suffixes() -> PublicSuffixList:
    if not _psl:
        _psl.append(PublicSuffixList())
    return _psl[0]
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def to_ascii(name: str) -> str:
    """Lower-case punycode for a name typed in any script ("*." kept)."""
    name = name.strip().rstrip(".").lower()
    wildcard = name.startswith("*.")
    body = name[2:] if wildcard else name
    try:
        ascii_body = ".".join(idna.encode(label, uts46=True).decode() if not label.isascii() or label.startswith("xn--")
                              else label for label in body.split("."))
    except idna.IDNAError as exc:
        raise ValueError(f"{name}: not a valid internationalized name ({exc})") from None
    return ("*." if wildcard else "") + ascii_body


def to_unicode(name: str) -> str:
    """The readable form of a punycode name."""
    try:
        return ".".join(idna.decode(label) if label.startswith("xn--") else label for label in name.split("."))
    except idna.IDNAError:
        return name


ECHO_CHARS = 60   # of a bad name quoted back: a pasted page must not come back as a wall of red
ECHO_NAMES = 5    # bad names quoted per kind of problem; the rest are counted

# Each kind of problem: (what it says about one name, about several).
_INVALID = ("not a valid domain name", "not valid domain names")
_RULES = " (letters, digits and hyphens; a wildcard only as the first label, *.example.com)."
PROBLEMS = {
    "ip": ("IP addresses cannot be validated by DNS-01; use a DNS name.",
           "IP addresses cannot be validated by DNS-01; use DNS names."),
    "idna": ("not a valid internationalized name.", "not valid internationalized names."),
    "invalid": (_INVALID[0] + _RULES, _INVALID[1] + _RULES),
    "suffix": ("a public suffix; no CA issues for it.", "public suffixes; no CA issues for them."),
    "wildcard": ("wildcards are not allowed by this CA profile "
                 "(turn on “Allow wildcard certificates” in the profile).",) * 2,
    "twice": ("listed twice.", "each listed more than once."),
}


def _echo(item: str) -> str:
    return item if len(item) <= ECHO_CHARS else item[:ECHO_CHARS - 1] + "…"


def _sentence(kind: str, items: list[str]) -> str:
    shown = ", ".join(_echo(i) for i in items[:ECHO_NAMES])
    if len(items) > ECHO_NAMES:
        shown += f" and {len(items) - ECHO_NAMES} more"
    return f"{shown}: {PROBLEMS[kind][0 if len(items) == 1 else 1]}"


def parse(text_or_list, *, allow_wildcard: bool, max_names: int) -> tuple[list[str], list[str]]:
    """Names in punycode, and the problems found: one sentence per kind of problem, naming
    each bad name once (the first few, shortened; the rest counted)."""
    raw = re.split(r"[\s,;]+", text_or_list) if isinstance(text_or_list, str) else list(text_or_list)
    names, seen = [], set()
    bad: dict[str, list[str]] = {}

    def refuse(kind: str, item: str) -> None:
        found = bad.setdefault(kind, [])
        if item not in found:
            found.append(item)
    for item in (r.strip() for r in raw):
        if not item:
            continue
        try:
            ipaddress.ip_address(item.strip("[]"))
            refuse("ip", item)
            continue
        except ValueError:
            pass
        try:
            name = to_ascii(item)
        except ValueError:
            refuse("idna", item)
            continue
        body = name[2:] if name.startswith("*.") else name
        labels = body.split(".")
        if "*" in body or len(body) > 253 or len(labels) < 2 or not all(_LABEL.match(l) for l in labels):
            refuse("invalid", item)
            continue
        if _public_suffixes().is_public(body):
            refuse("suffix", item)
            continue
        if name.startswith("*.") and not allow_wildcard:
            refuse("wildcard", item)
            continue
        if name in seen:
            refuse("twice", item)
            continue
        seen.add(name)
        names.append(name)
    problems = [_sentence(kind, items) for kind, items in bad.items()]
    if not names and not problems:
        problems.append("Enter at least one domain name.")
    if len(names) > max_names:
        problems.append(f"{len(names)} names; this CA allows at most {max_names} per certificate.")
    return names, problems


def base_domain(name: str) -> str:
    """The name whose _acme-challenge record validates `name` (apex and wildcard share it)."""
    return name[2:] if name.startswith("*.") else name


def challenge_bases(names: list[str]) -> list[str]:
    """Each distinct base, in order: one CNAME per entry."""
    return list(dict.fromkeys(base_domain(n) for n in names))


def label_for(domain: str, zone: str) -> str:
    """The stable label for (domain, zone): made once, kept forever, so renewals need no DNS change."""
    s = db.session()
    row = s.execute(select(CnameLabel).filter_by(domain=domain, zone=zone)).scalar_one_or_none()
    if row is not None:
        return row.label
    label = base64.b32encode(os.urandom(10)).decode().lower()  # 16 chars, DNS-safe
    try:
        with s.begin_nested():
            s.add(CnameLabel(domain=domain, zone=zone, label=label))
        s.commit()  # a label shown once is the label forever
    except IntegrityError:  # another process made it first: use theirs
        s.rollback()
        return s.execute(select(CnameLabel.label).filter_by(domain=domain, zone=zone)).scalar_one()
    return label


def known_labels(pairs: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The labels already made for these (domain, zone) pairs, in one query per zone (the
    delegation watch asks for a thousand certificates' at once, not one query each)."""
    found: dict[tuple[str, str], str] = {}
    for zone in {z for _, z in pairs}:
        names = [d for d, z in pairs if z == zone]
        found.update(((d, zone), label) for d, label in db.session().execute(
            select(CnameLabel.domain, CnameLabel.label).where(CnameLabel.zone == zone,
                                                              CnameLabel.domain.in_(names))))
    return found


def cname_target(domain: str, zone: str) -> str:
    """Where _acme-challenge.<domain> must point."""
    return f"{label_for(domain, zone)}.{zone}"
