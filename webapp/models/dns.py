"""Technical zones, the TXT records written into them, and the stable CNAME labels."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import NEVER_REUSE_IDS, Base, Encrypted, UTCDateTime, utcnow


class TechZone(Base):
    """A technical zone and the DNS provider that writes its TXT records."""

    __tablename__ = "sslm_tech_zone"
    __table_args__ = NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    provider: Mapped[str] = mapped_column(String(32), default="builtin")
    options: Mapped[dict] = mapped_column(JSON, default=dict)       # non-secret options
    secrets: Mapped[str | None] = mapped_column(Encrypted)          # JSON of secret options
    last_check_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_check_message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DnsRecord(Base):
    """A TXT value SSL Manager wrote into a technical zone (served by the builtin server, and
    the sweeper's record of what it may remove for the other providers)."""

    __tablename__ = "sslm_dns_record"
    id: Mapped[int] = mapped_column(primary_key=True)
    zone: Mapped[str] = mapped_column(String(253), index=True)
    name: Mapped[str] = mapped_column(String(253), index=True)  # lower-case FQDN, no final dot
    value: Mapped[str] = mapped_column(String(255))
    ttl: Mapped[int] = mapped_column(Integer, default=60)
    certificate_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CnameLabel(Base):
    """The stable label per (domain, technical zone): renewals never need a DNS change."""

    __tablename__ = "sslm_cname_label"
    __table_args__ = (UniqueConstraint("domain", "zone"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(String(253))
    zone: Mapped[str] = mapped_column(String(253))
    label: Mapped[str] = mapped_column(String(63), unique=True)
