"""A database with every kind of row SSL Manager stores, for the copy, backup and restore tests."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from tests.conftest import ADMIN, signed_in
from webapp import db
from webapp.crypto import generate_private_key
from webapp.models import (
    AuditEvent,
    CAProfile,
    Certificate,
    CertificateVersion,
    CnameLabel,
    DnsRecord,
    Lease,
    LoginAttempt,
    NotificationChannel,
    NotificationSent,
    Setting,
    TechZone,
    TimelineEvent,
    utcnow,
)
from webapp.services.auth import create_admin


def seed_every_kind(app) -> dict:
    """Rows in every table; a certificate deleted last, so the counters are past the largest id.
    Returns what the tests compare afterwards: secrets in clear and the ids."""
    key = generate_private_key("ec-p256")
    now = utcnow().replace(microsecond=123456)
    with app.app_context():
        s = db.session()
        create_admin(*ADMIN)
        s.add(LoginAttempt(username="h" * 16, address="192.0.2.1", at=now))
        profile = CAProfile(name="ZeroSSL", module="zerossl", eab_kid="kid-1", eab_hmac="eab-hmac-secret",
                            api_key="api-key-secret", account_key="-----BEGIN PRIVATE KEY-----account",
                            account_url="https://ca.test/acct/1", directory_meta={"profiles": {"x": "y"}},
                            renew_days_before=None, rate_limited_until=now + timedelta(hours=1))
        s.add(profile)
        s.add(TechZone(name="acme.tech.test", provider="rfc2136", options={"server": "127.0.0.1:53"},
                       secrets='{"tsig_secret": "tsig-secret"}', last_check_ok=True, last_check_at=now))
        s.flush()
        certs = [Certificate(profile_id=profile.id, domains=[f"c{i}.test", f"www.c{i}.test"],
                             common_name=f"c{i}.test", search_text=f"c{i}.test", status="active",
                             private_key=key if i == 0 else None, account_key="cert-account-secret",
                             not_after=now + timedelta(days=60), delegation_ok=(i == 0))
                 for i in range(3)]
        s.add_all(certs)
        s.flush()
        for number in (1, 2):
            s.add(CertificateVersion(certificate_id=certs[0].id, number=number, cert_pem=f"CERT {number}\n",
                                     chain_pem="CHAIN\n", alternates=[["ALT"]], private_key=key,
                                     serial=f"0{number}", not_before=now, not_after=now + timedelta(days=90)))
        s.add(TimelineEvent(certificate_id=certs[0].id, at=now, level="info", message="issued"))
        s.add(AuditEvent(at=now, actor="admin", action="certificate created", object_type="certificate",
                         object_id=str(certs[0].id), summary="c0.test"))
        channel = NotificationChannel(name="ops", kind="webhook", settings={"url": "https://hook.test/"},
                                      secret="webhook-hmac-secret", events=["expiring"])
        s.add(channel)
        s.flush()
        s.add(NotificationSent(dedupe_key="expiring:1:14", channel_id=channel.id, event="expiring",
                               certificate_id=certs[0].id, ok=True, attempts=1))
        s.add(Lease(name="notify-scan", holder="node-a", until=None, last_run_at=now))
        s.add(Setting(key="reminder_days", value=[30, 14, 7]))
        s.add(Setting(key="webhook_allow", value=None))  # JSON null in a NOT NULL column
        s.add(DnsRecord(zone="acme.tech.test", name="x.acme.tech.test", value="txt-value", certificate_id=certs[1].id))
        s.add(CnameLabel(domain="c0.test", zone="acme.tech.test", label="abc123"))
        s.commit()
        deleted = certs[2].id
        s.delete(certs[2])
        s.commit()
        return {"private_key": key, "certificate_id": certs[0].id, "deleted_id": deleted}


def secrets_in_clear(app) -> dict:
    """Every secret as the app reads it (decrypted with its key)."""
    with app.app_context():
        s = db.session()
        s.expire_all()
        profile = s.execute(sa.select(CAProfile)).scalar_one()
        return {"profile": (profile.eab_hmac, profile.api_key, profile.account_key),
                "zone": s.execute(sa.select(TechZone.secrets)).scalar_one(),
                "channel": s.execute(sa.select(NotificationChannel.secret)).scalar_one(),
                "certs": sorted(s.execute(sa.select(Certificate.id, Certificate.private_key,
                                                    Certificate.account_key)).all()),
                "versions": sorted(s.execute(sa.select(CertificateVersion.number,
                                                       CertificateVersion.private_key)).all())}


def downloads(app, cert_id: int) -> dict:
    """What the pages serve for the certificate: its list entry, cert.pem and privkey.pem."""
    client = signed_in(app)
    listing = client.get("/certificates/")
    assert listing.status_code == 200
    files = {"listed": f'/certificates/{cert_id}"' in listing.get_data(as_text=True)}
    for name in ("cert.pem", "privkey.pem"):
        resp = client.get(f"/certificates/{cert_id}/download/{name}")
        assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
        files[name] = resp.get_data(as_text=True)
    return files
