"""Certificate tags: lowercase labels ([a-z0-9._-], 1-64 characters) that lists filter on and
that an API token may be restricted to (the web server "web-03" that serves a certificate)."""
from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import delete, select

from .. import db
from ..errors import ValidationError
from ..models import Certificate, CertificateTag
from . import audit

TAG = re.compile(r"[a-z0-9._-]{1,64}")
MAX_TAGS = 50
RULE = "lowercase letters, digits, '.', '_' and '-', 1 to 64 characters"


def parse(value: str | Iterable[str] | None, field: str = "tags") -> list[str]:
    """Tags from a list or a comma/space separated string: trimmed, lowercased, deduplicated
    in order. ValidationError naming `field` and each bad tag."""
    if value is None:
        return []
    items = re.split(r"[\s,]+", value) if isinstance(value, str) else [str(v) for v in value]
    tags = list(dict.fromkeys(t.strip().lower() for t in items if t and t.strip()))
    bad = [t for t in tags if not TAG.fullmatch(t)]
    if bad:
        shown = ", ".join(repr(t if len(t) <= 70 else t[:70] + "…") for t in bad[:5])
        raise ValidationError({field: f"Not a tag: {shown}. Use {RULE}."})
    if len(tags) > MAX_TAGS:
        raise ValidationError({field: f"At most {MAX_TAGS} tags per certificate."})
    return tags


def of(cert_id: int) -> list[str]:
    return list(db.session().scalars(select(CertificateTag.tag).where(
        CertificateTag.certificate_id == cert_id).order_by(CertificateTag.tag)))


def of_many(cert_ids: Iterable[int]) -> dict[int, list[str]]:
    """Certificate id -> its tags, in one query (a page of a list)."""
    ids = list(cert_ids)
    found: dict[int, list[str]] = {i: [] for i in ids}
    if ids:
        for cert_id, tag in db.session().execute(
                select(CertificateTag.certificate_id, CertificateTag.tag)
                .where(CertificateTag.certificate_id.in_(ids)).order_by(CertificateTag.tag)):
            found[cert_id].append(tag)
    return found


def all_tags() -> list[str]:
    return list(db.session().scalars(select(CertificateTag.tag).distinct().order_by(CertificateTag.tag)))


def with_tag(stmt, tag: str):
    """Narrow a select of Certificate to those carrying `tag`."""
    return stmt.where(Certificate.id.in_(select(CertificateTag.certificate_id).where(CertificateTag.tag == tag)))


def replace(cert: Certificate, tags: Iterable[str], *, commit: bool = True) -> list[str]:
    """Set the certificate's tags to exactly `tags` (already parsed)."""
    wanted = list(dict.fromkeys(tags))
    if len(wanted) > MAX_TAGS:
        raise ValidationError({"tags": f"At most {MAX_TAGS} tags per certificate."})
    before = of(cert.id)
    if wanted == sorted(before) or set(wanted) == set(before):
        return sorted(before)
    s = db.session()
    s.execute(delete(CertificateTag).where(CertificateTag.certificate_id == cert.id))
    s.add_all(CertificateTag(certificate_id=cert.id, tag=t) for t in wanted)
    audit.record("certificate tags set", "certificate", cert.id,
                 f"{', '.join(cert.domains)}: {', '.join(sorted(wanted)) or 'no tags'}")
    if commit:
        s.commit()
    return sorted(wanted)


def add(cert: Certificate, tags: Iterable[str]) -> list[str]:
    return replace(cert, of(cert.id) + list(tags))


def remove(cert: Certificate, tags: Iterable[str]) -> list[str]:
    gone = set(tags)
    return replace(cert, [t for t in of(cert.id) if t not in gone])


def delete_for(cert_id: int) -> None:
    """With the certificate (the caller commits): never left to a foreign key pragma."""
    db.session().execute(delete(CertificateTag).where(CertificateTag.certificate_id == cert_id))
