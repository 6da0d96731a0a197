"""Users and how they sign in: second factors, browser sessions, the sign-in throttle."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from .base import NEVER_REUSE_IDS, Base, Encrypted, UTCDateTime, utcnow


class Admin(Base):
    """A user (the table and class keep their first name: every user was an admin once), with
    a role (services/roles.py), and optionally a second factor."""

    __tablename__ = "sslm_admin"
    __table_args__ = NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Sessions carry the epoch they were signed in under; raising it (sign-out, new password,
    # disabling) ends every one of them at once.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    role: Mapped[str] = mapped_column(String(16), default="admin", server_default="admin")
    # TOTP (RFC 6238): the shared secret, encrypted with the data key; on from totp_enabled_at.
    totp_secret: Mapped[str | None] = mapped_column(Encrypted)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    totp_last_step: Mapped[int | None] = mapped_column(Integer)   # a code is good once
    # SHA-256 of each unused recovery code (random, 80 bits: a fast hash is enough).
    recovery_codes: Mapped[list | None] = mapped_column(JSON, default=list)
    # Single sign-on: "<issuer> <sub>" of the OpenID Provider's account (None: a local user).
    oidc_subject: Mapped[str | None] = mapped_column(String(600), unique=True)


class Passkey(Base):
    """A WebAuthn credential (a passkey or security key) of a user: a second factor, or a
    sign-in without a password. Only public material: the credential's id and public key."""

    __tablename__ = "sslm_passkey"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("sslm_admin.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)   # base64url
    public_key: Mapped[str] = mapped_column(Text)                           # base64url COSE key
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserSession(Base):
    """A signed-in browser: listed on the account page, revocable one by one. The cookie holds
    a random token; the database only its SHA-256."""

    __tablename__ = "sslm_session"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("sslm_admin.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))   # the role it was issued under (rotated on change)
    address: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginAttempt(Base):
    """Failed sign-ins, counted per account and address for the sign-in throttle. `username`
    holds a keyed hash of the normalised name, never what was typed (often a password)."""

    __tablename__ = "sslm_login_attempt"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
