"""API tokens and what hangs off them: idempotency keys, and the agents that poll with them."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import NEVER_REUSE_IDS, Base, UTCDateTime, utcnow


class ApiToken(Base):
    """A bearer token for /api/v1. Only a sha256 of its secret is kept: the token is shown once.
    `scopes`, `cert_ids` and `tags` are what services/permissions.py reads."""

    __tablename__ = "sslm_api_token"
    __table_args__ = NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list] = mapped_column(JSON, default=list)
    cert_ids: Mapped[list] = mapped_column(JSON, default=list)   # restriction: these certificates
    tags: Mapped[list] = mapped_column(JSON, default=list)       # ... and those with these tags
    created_by: Mapped[str] = mapped_column(String(150), default="")
    # The user it belongs to: it never holds more than that user's role (None: made by the
    # instance's owner at the shell, who holds the data key anyway).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("sslm_admin.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_address: Mapped[str] = mapped_column(String(64), default="")


class IdempotencyKey(Base):
    """An API POST's Idempotency-Key: the same key with the same body gets the stored answer
    again (a retried create makes one certificate); kept SSLMANAGER_API_IDEMPOTENCY_HOURS."""

    __tablename__ = "sslm_idempotency_key"
    __table_args__ = (UniqueConstraint("token_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer, default=0)   # 0: the first request still runs
    response: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Agent(Base):
    """An `sslmanager agent` on a web server: known by the token it polls with and the name it
    gives (its host name by default); last_seen_at is written at most every few minutes."""

    __tablename__ = "sslm_agent"
    __table_args__ = (UniqueConstraint("token_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(Integer, index=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(64), default="")
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AgentInstall(Base):
    """What one agent serves of one certificate: the serial it last installed, and how its last
    attempt went (an attempt that failed leaves the previous serial in place)."""

    __tablename__ = "sslm_agent_install"
    __table_args__ = (UniqueConstraint("agent_id", "certificate_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("sslm_agent.id", ondelete="CASCADE"))
    certificate_id: Mapped[int] = mapped_column(ForeignKey("sslm_certificate.id", ondelete="CASCADE"), index=True)
    installed_version_id: Mapped[int | None] = mapped_column(Integer)
    installed_serial: Mapped[str] = mapped_column(String(64), default="")
    last_serial: Mapped[str] = mapped_column(String(64), default="")
    last_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    last_message: Mapped[str] = mapped_column(Text, default="")
    last_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
