"""Database models on SSL Manager's own DeclarativeBase, so a host app's Flask-SQLAlchemy
instance and ours never collide. Tables carry the `sslm_` prefix for the same reason."""
from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from flask import current_app
from sqlalchemy import (JSON, Boolean, DateTime, ForeignKey, Index, Integer, MetaData, String, Text,
                        UniqueConstraint, false, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

BIND_KEY = "sslmanager"

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Stores UTC; always returns aware datetimes (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Encrypted(TypeDecorator):
    """A secret: encrypted with the app's data key on the way in, decrypted on the way out."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None or value == "":
            return None
        return current_app.extensions["sslmanager"].keyring.encrypt(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return current_app.extensions["sslmanager"].keyring.decrypt(value)


class Status(StrEnum):
    """A certificate's place in its lifecycle (stored as the plain string)."""

    DRAFT = "draft"
    CSR = "csr"
    PENDING = "pending"            # waiting for the _acme-challenge CNAMEs
    PROCESSING = "processing"      # an order in flight (see Step)
    ACTIVE = "active"
    FAILED = "failed"
    EXPIRED = "expired"
    REVOKED = "revoked"


class Step(StrEnum):
    """Where a Processing certificate's order stands, saved as it happens (a restart resumes it)."""

    NONE = ""
    RENEWING = "renewing"
    ORDER_CREATED = "order created"
    TXT_WRITTEN = "TXT written"
    FINALIZING = "finalizing"


# How far along, in percent, for the page's progress bar: per status, and per step while Processing.
STATUS_PROGRESS = {Status.DRAFT: 10, Status.CSR: 25, Status.PENDING: 40, Status.PROCESSING: 55,
                   Status.ACTIVE: 100}
STEP_PROGRESS = {Step.ORDER_CREATED: 65, Step.TXT_WRITTEN: 75, Step.FINALIZING: 90}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING, info={"bind_key": BIND_KEY})


# Tables whose ids are seen outside the database (deploy hooks, exports, metrics, the audit log,
# URLs): on SQLite a deleted row's id would otherwise go to the next row (migration 0007).
# PostgreSQL's sequences never reuse a number anyway.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


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


class CAProfile(Base):
    """A CA profile: which CA, the ACME account, the technical zone and timeouts."""

    __tablename__ = "sslm_ca_profile"
    __table_args__ = NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    module: Mapped[str] = mapped_column(String(64))
    ca_key: Mapped[str] = mapped_column(String(64), default="")        # the plugin's directory key
    directory_url: Mapped[str] = mapped_column(String(500), default="")  # custom module only
    ca_bundle: Mapped[str] = mapped_column(Text, default="")             # PEM trusted for the CA's TLS
    email: Mapped[str] = mapped_column(String(254), default="")
    eab_kid: Mapped[str] = mapped_column(String(255), default="")
    eab_hmac: Mapped[str | None] = mapped_column(Encrypted)
    api_key: Mapped[str | None] = mapped_column(Encrypted)
    dns_zone: Mapped[str] = mapped_column(String(253), default="")
    allow_wildcard: Mapped[bool] = mapped_column(Boolean, default=False)
    dns_ttl: Mapped[int] = mapped_column(Integer, default=60)
    api_timeout: Mapped[int] = mapped_column(Integer, default=20)
    account_key: Mapped[str | None] = mapped_column(Encrypted)
    account_url: Mapped[str] = mapped_column(String(500), default="")
    account_status: Mapped[str] = mapped_column(String(32), default="")
    account_email: Mapped[str] = mapped_column(String(254), default="")
    account_directory: Mapped[str] = mapped_column(String(500), default="")  # where account_url lives
    last_test_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_test_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_test_message: Mapped[str] = mapped_column(Text, default="")
    directory_meta: Mapped[dict | None] = mapped_column(JSON)
    # What the CA's authorizations offer (challenge types, dns-persist-01's issuer domain
    # names), learned by Save and Test's probe order and by every order since (services/persist.py).
    challenge_info: Mapped[dict | None] = mapped_column(JSON)
    # Renew this many days before expiry instead of the lifetime rule (ARI still wins).
    renew_days_before: Mapped[int | None] = mapped_column(Integer)
    # The CA said rateLimited: no new order for this profile before this time (kept across restarts).
    rate_limited_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Health as issuance saw it, for CA failover (services/failover.py): cheap counters that any
    # certificate's attempt updates and any success (issuance, ARI, Save and Test) clears.
    unreachable_since: Mapped[datetime | None] = mapped_column(UTCDateTime)   # first failure of a streak
    unreachable_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # its latest failure
    server_errors: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # serverInternal in a row
    account_refused: Mapped[str] = mapped_column(Text, default="", server_default="")  # the CA's words
    # Prefer the chain whose top certificate's issuer has this name (services/chains.py); "" = the CA's default.
    preferred_chain: Mapped[str] = mapped_column(String(255), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def healthy_again(self) -> None:
        """The CA answered and did its part: forget the failures failover counts."""
        self.unreachable_since = self.unreachable_seen_at = None
        self.server_errors, self.account_refused = 0, ""


class CAFallback(Base):
    """One entry of an ordered fallback list: a certificate's own (certificate_id) or a CA
    profile's default for its certificates (owner_profile_id). Exactly one owner is set."""

    __tablename__ = "sslm_ca_fallback"
    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int | None] = mapped_column(Integer, index=True)
    owner_profile_id: Mapped[int | None] = mapped_column(Integer, index=True)
    fallback_id: Mapped[int] = mapped_column(ForeignKey("sslm_ca_profile.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=1)


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


# The partial indexes' conditions, as literal SQL: a query must repeat them word for word (no
# bound parameters) for SQLite and PostgreSQL's generic plans to prove the index applies.
SERVING = text("status NOT IN ('revoked', 'expired')")
AUTO_RENEWING = text("status = 'active' AND auto_renew = true")


class Certificate(Base):
    """A certificate and its lifecycle: draft → csr → pending → processing → active, or failed;
    later expired or revoked. Each issuance adds a CertificateVersion."""

    __tablename__ = "sslm_certificate"
    __table_args__ = (
        Index("ix_sslm_certificate_status_next", "status", "next_run_at"),
        # The dashboard's expiry weeks and "expiring without renewal", and its renewal weeks:
        # range counts over these read the index alone (no pass over 100,000 wide rows).
        Index("ix_sslm_certificate_serving", "not_after", "auto_renew",
              postgresql_where=SERVING, sqlite_where=SERVING),
        Index("ix_sslm_certificate_auto_renewing", "renew_at",
              postgresql_where=AUTO_RENEWING, sqlite_where=AUTO_RENEWING),
        NEVER_REUSE_IDS)
    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("sslm_ca_profile.id"), index=True)
    domains: Mapped[list] = mapped_column(JSON)            # punycode, in the order given
    common_name: Mapped[str] = mapped_column(String(253), index=True)
    search_text: Mapped[str] = mapped_column(Text, default="")  # lower-case names, for search
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    key_type: Mapped[str] = mapped_column(String(16), default="ec-p256")
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=True)
    acme_profile: Mapped[str] = mapped_column(String(64), default="")
    # How the CA validates the names: "cname" (dns-01 through the technical zone) or
    # "dns-persist-01" (one TXT record the domain owner sets once; no DNS write at issuance).
    validation: Mapped[str] = mapped_column(String(16), default="cname", server_default="cname")
    reuse_key: Mapped[bool] = mapped_column(Boolean, default=False)
    private_key: Mapped[str | None] = mapped_column(Encrypted)   # the key of the CSR in flight
    csr: Mapped[str] = mapped_column(Text, default="")
    # The order in flight, stored as it goes so a restarted process resumes it.
    order_url: Mapped[str] = mapped_column(String(500), default="")
    step: Mapped[str] = mapped_column(String(64), default="")
    # ZeroSSL without keys: each certificate has its own ACME account.
    account_key: Mapped[str | None] = mapped_column(Encrypted)
    account_url: Mapped[str] = mapped_column(String(500), default="")
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_hint: Mapped[str] = mapped_column(Text, default="")
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    serial: Mapped[str] = mapped_column(String(64), default="")
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # next scheduler look
    renew_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    renew_reason: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    claimed_by: Mapped[str] = mapped_column(String(64), default="")
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Delegation watch: does _acme-challenge still point into the technical zone?
    delegation_ok: Mapped[bool | None] = mapped_column(Boolean, index=True)
    delegation_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delegation_message: Mapped[str] = mapped_column(Text, default="")
    # ACME Renewal Information (RFC 9773): the CA's window as last polled, and when to ask again.
    ari_window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ari_window_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ari_explanation_url: Mapped[str] = mapped_column(String(500), default="")
    ari_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ari_next_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Deploy after issue/renewal: PEM files into a directory, a reload command, a TLS probe.
    deploy_dir: Mapped[str] = mapped_column(String(500), default="")
    deploy_command: Mapped[str] = mapped_column(Text, default="")
    deploy_probe: Mapped[str] = mapped_column(String(300), default="")   # host:port
    deploy_last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deploy_last_ok: Mapped[bool | None] = mapped_column(Boolean)
    deploy_last_message: Mapped[str] = mapped_column(Text, default="")
    # CA failover: the profile the attempt in flight uses when it is not profile_id (a fallback),
    # and why it failed over. Cleared when a version is issued: the next renewal tries the primary.
    attempt_profile_id: Mapped[int | None] = mapped_column(Integer)
    failover_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def progress(self) -> int | None:
        """How far along the lifecycle, in percent: by the step while Processing, else the status."""
        if self.status == Status.PROCESSING and self.step in STEP_PROGRESS:
            return STEP_PROGRESS[Step(self.step)]
        return STATUS_PROGRESS.get(self.status)  # type: ignore[call-overload]


class CertificateVersion(Base):
    """One issued certificate: what a renewal adds; the previous stays downloadable."""

    __tablename__ = "sslm_certificate_version"
    __table_args__ = NEVER_REUSE_IDS
    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("sslm_certificate.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    cert_pem: Mapped[str] = mapped_column(Text)
    chain_pem: Mapped[str] = mapped_column(Text)
    alternates: Mapped[list] = mapped_column(JSON, default=list)  # other full chains offered
    chain_choice: Mapped[str] = mapped_column(Text, default="", server_default="")  # which chain, and why
    private_key: Mapped[str] = mapped_column(Encrypted)
    serial: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(Text, default="")
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    order_url: Mapped[str] = mapped_column(String(500), default="")
    account_url: Mapped[str] = mapped_column(String(500), default="")
    # The CA profile that issued it (None: before failover existed, the certificate's own), and
    # why it came from a fallback ("" from the primary).
    profile_id: Mapped[int | None] = mapped_column(Integer)
    failover_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TimelineEvent(Base):
    """One line of a certificate's timeline: a protocol step and its outcome."""

    __tablename__ = "sslm_timeline_event"
    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("sslm_certificate.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    level: Mapped[str] = mapped_column(String(8), default="info")
    message: Mapped[str] = mapped_column(Text)


class CnameLabel(Base):
    """The stable label per (domain, technical zone): renewals never need a DNS change."""

    __tablename__ = "sslm_cname_label"
    __table_args__ = (UniqueConstraint("domain", "zone"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(String(253))
    zone: Mapped[str] = mapped_column(String(253))
    label: Mapped[str] = mapped_column(String(63), unique=True)


class Lease(Base):
    """A named lease in the database: whoever holds it runs that job this tick, on any node."""

    __tablename__ = "sslm_lease"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), default="")
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


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


class CertificateTag(Base):
    """A certificate's tags (lowercase [a-z0-9._-]{1,64}): what lists filter on and what an API
    token may be restricted to (e.g. the web server "web-03" that serves it)."""

    __tablename__ = "sslm_certificate_tag"
    certificate_id: Mapped[int] = mapped_column(
        ForeignKey("sslm_certificate.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


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


class Setting(Base):
    """Global settings edited in the UI (expiry reminder days, webhook allow-list, ...)."""

    __tablename__ = "sslm_setting"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


def encrypted_columns() -> list[tuple[type[Base], str]]:
    """Every (model, attribute) holding a secret: what key rotation must rewrite."""
    found = []
    for mapper in Base.registry.mappers:
        for column in mapper.columns:
            if isinstance(column.type, Encrypted):
                found.append((mapper.class_, column.key))
    return found



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
