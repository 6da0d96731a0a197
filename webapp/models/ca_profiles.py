"""CA profiles (the CA, its ACME account, its health for failover) and fallback lists."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import NEVER_REUSE_IDS, Base, Encrypted, UTCDateTime, utcnow


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
