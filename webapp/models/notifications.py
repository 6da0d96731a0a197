"""Notification channels, and what was sent on them (the duplicate guard)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import NEVER_REUSE_IDS, Base, Encrypted, UTCDateTime, utcnow


class NotificationChannel(Base):
    """Where notifications go: an SMTP mailbox list or a webhook URL."""

    __tablename__ = "sslm_notification_channel"
    __table_args__ = NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16))                 # "email" | "webhook"
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)     # non-secret settings
    secret: Mapped[str | None] = mapped_column(Encrypted)          # SMTP password / webhook HMAC key
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("sslm_ca_profile.id", ondelete="CASCADE"))
    events: Mapped[list] = mapped_column(JSON, default=list)       # empty = every event
    last_test_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_test_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_test_message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NotificationSent(Base):
    """One notification per (event key, channel): the unique key is what stops duplicates,
    whichever process sends."""

    __tablename__ = "sslm_notification_sent"
    __table_args__ = (UniqueConstraint("dedupe_key", "channel_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(255))
    channel_id: Mapped[int] = mapped_column(ForeignKey("sslm_notification_channel.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(64), index=True)
    certificate_id: Mapped[int | None] = mapped_column(Integer, index=True)
    ok: Mapped[bool | None] = mapped_column(Boolean)
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
