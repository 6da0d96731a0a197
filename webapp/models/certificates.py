"""Certificates and their lifecycle, the versions issued, the timeline, tags."""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import NEVER_REUSE_IDS, Base, Encrypted, UTCDateTime, utcnow


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
        # "Pending for more than a day" on the dashboard: a range of this index.
        Index("ix_sslm_certificate_status_pending", "status", "pending_since"),
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
    # When it last entered Pending (a retry re-enters it): the dashboard's "pending too long".
    pending_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
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


class CertificateTag(Base):
    """A certificate's tags (lowercase [a-z0-9._-]{1,64}): what lists filter on and what an API
    token may be restricted to (e.g. the web server "web-03" that serves it)."""

    __tablename__ = "sslm_certificate_tag"
    certificate_id: Mapped[int] = mapped_column(
        ForeignKey("sslm_certificate.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
