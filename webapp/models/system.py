"""Instance-wide rows: the audit log, the job leases, the settings edited in the UI."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import NEVER_REUSE_IDS, Base, UTCDateTime, utcnow


class AuditEvent(Base):
    """Who did what and when; never holds a secret."""

    __tablename__ = "sslm_audit_event"
    __table_args__ = NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(150), default="")
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(32), default="")
    object_id: Mapped[str] = mapped_column(String(64), default="")
    summary: Mapped[str] = mapped_column(Text, default="")


class Lease(Base):
    """A named lease in the database: whoever holds it runs that job this tick, on any node."""

    __tablename__ = "sslm_lease"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), default="")
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Setting(Base):
    """Global settings edited in the UI (expiry reminder days, webhook allow-list, ...)."""

    __tablename__ = "sslm_setting"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
