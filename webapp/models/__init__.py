"""Database models on SSL Manager's own DeclarativeBase, so a host app's Flask-SQLAlchemy
instance and ours never collide. Tables carry the `sslm_` prefix for the same reason.

One module per subject; everything is re-exported here, so code imports from `webapp.models`
only. Importing any submodule runs this file first, so every table is on Base.metadata (what
Alembic compares and encrypted_columns() walks) whichever model a caller names."""
from __future__ import annotations

from .base import (BIND_KEY, NAMING, NEVER_REUSE_IDS, Base, Encrypted, UTCDateTime, encrypted_columns,
                   utcnow)
from .ca_profiles import CAFallback, CAProfile
from .certificates import (AUTO_RENEWING, SERVING, STATUS_PROGRESS, STEP_PROGRESS, Certificate,
                           CertificateTag, CertificateVersion, Status, Step, TimelineEvent)
from .dns import CnameLabel, DnsRecord, TechZone
from .notifications import NotificationChannel, NotificationSent
from .system import AuditEvent, Lease, Setting
from .tokens import Agent, AgentInstall, ApiToken, IdempotencyKey
from .users import Admin, LoginAttempt, Passkey, UserSession

__all__ = [
    "AUTO_RENEWING", "BIND_KEY", "NAMING", "NEVER_REUSE_IDS", "SERVING", "STATUS_PROGRESS",
    "STEP_PROGRESS", "Admin", "Agent", "AgentInstall", "ApiToken", "AuditEvent", "Base",
    "CAFallback", "CAProfile", "Certificate", "CertificateTag", "CertificateVersion", "CnameLabel",
    "DnsRecord", "Encrypted", "IdempotencyKey", "Lease", "LoginAttempt", "NotificationChannel",
    "NotificationSent", "Passkey", "Setting", "Status", "Step", "TechZone", "TimelineEvent",
    "UTCDateTime", "UserSession", "encrypted_columns", "utcnow",
]
