"""Item 1: embedding changes nothing connection-wide on the host's database, and our own
integrity (children deleted with their parent) does not lean on SQLite's foreign_keys pragma."""
from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import func, select

from webapp import db as sslm_db
from webapp.errors import Conflict
from webapp.models import (CAProfile, Certificate, CertificateVersion, NotificationChannel, NotificationSent,
                           TimelineEvent, utcnow)
from webapp.services import ca_profiles, certificates, notifications

from .conftest import csrf_token, make_host, sign_in


def test_a_host_delete_its_schema_never_enforced_still_answers_302(host):
    client = sign_in(host.test_client())
    client.get("/panel/ssl/ca/")  # our pages have been used on this very engine
    owner_id = _owner_id(host)
    resp = client.post(f"/users/{owner_id}/delete", data={"csrf_token": csrf_token(client, "/login")})
    assert resp.status_code == 302
    with host.app_context():
        panel = host.extensions["hostpanel"]
        assert panel["db"].session.get(panel["User"], owner_id) is None
        assert panel["db"].session.execute(select(panel["Site"])).scalar_one().owner_id == owner_id  # as before


def test_the_host_database_keeps_its_journal_mode_and_unenforced_foreign_keys(host, tmp_path):
    client = sign_in(host.test_client())
    assert client.get("/panel/ssl/ca/").status_code == 200
    with host.app_context():
        with host.extensions["hostpanel"]["db"].engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
    with sqlite3.connect(tmp_path / "panel.db") as conn:  # a backup copying panel.db alone is whole
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not (tmp_path / "panel.db-wal").exists()


def test_a_database_of_our_own_beside_the_host_gets_wal_and_foreign_keys(tmp_path):
    host = make_host(tmp_path, SSLMANAGER_DATABASE_URL=f"sqlite:///{tmp_path}/ssl.db")
    with host.app_context():
        with host.extensions["sslmanager"].engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        with host.extensions["hostpanel"]["db"].engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"


def test_deleting_a_profile_deletes_its_channels_and_their_records_without_the_pragma(host):
    with host.app_context():
        profile, channel = _profile_with_channel()
        kept = _channel("for everyone", None)
        ca_profiles.delete(profile)
        s = sslm_db.session()
        assert s.scalar(select(func.count()).select_from(NotificationChannel)) == 1
        assert s.scalar(select(func.count()).select_from(NotificationSent)) == 1
        assert s.get(NotificationChannel, kept.id) is not None


def test_deleting_a_channel_deletes_its_sent_records_without_the_pragma(host):
    with host.app_context():
        _profile, channel = _profile_with_channel()
        notifications.delete_channel(channel)
        assert sslm_db.session().scalar(select(func.count()).select_from(NotificationSent)) == 0


def test_deleting_a_certificate_deletes_its_versions_and_timeline_without_the_pragma(host):
    with host.app_context():
        profile, _channel_ = _profile_with_channel()
        s = sslm_db.session()
        cert = Certificate(profile_id=profile.id, domains=["a.example.net"], common_name="a.example.net")
        s.add(cert)
        s.flush()
        s.add_all([TimelineEvent(certificate_id=cert.id, message="made"),
                   CertificateVersion(certificate_id=cert.id, number=1, cert_pem="x", chain_pem="x",
                                      private_key="k", serial="01", not_before=utcnow(), not_after=utcnow())])
        s.commit()
        certificates.delete(cert)
        assert s.scalar(select(func.count()).select_from(TimelineEvent)) == 0
        assert s.scalar(select(func.count()).select_from(CertificateVersion)) == 0


def test_a_profile_that_got_a_certificate_meanwhile_is_not_deleted(host, monkeypatch):
    with host.app_context():
        profile, channel = _profile_with_channel()
        s = sslm_db.session()
        s.add(Certificate(profile_id=profile.id, domains=["b.example.net"], common_name="b.example.net"))
        s.commit()
        monkeypatch.setattr(ca_profiles, "certificate_counts", dict)  # the check ran before it came
        with pytest.raises(Conflict, match="meanwhile"):
            ca_profiles.delete(profile)
        assert s.get(CAProfile, profile.id) is not None and s.get(NotificationChannel, channel.id) is not None


def _owner_id(host) -> int:
    with host.app_context():
        panel = host.extensions["hostpanel"]
        return panel["db"].session.execute(select(panel["User"].id).filter_by(email="owner@example.net")).scalar_one()


def _channel(name, profile_id):
    s = sslm_db.session()
    channel = NotificationChannel(name=name, kind="webhook", settings={"url": "https://hooks.example.net/"},
                                  profile_id=profile_id)
    s.add(channel)
    s.flush()
    s.add(NotificationSent(dedupe_key=f"expiring:{name}", channel_id=channel.id, event="expiring"))
    s.commit()
    return channel


def _profile_with_channel():
    s = sslm_db.session()
    profile = CAProfile(name="LE", module="letsencrypt")
    s.add(profile)
    s.commit()
    return profile, _channel("ops", profile.id)


def test_a_restore_never_replaces_the_host_panels_shared_sqlite_file(host, tmp_path):
    import hashlib

    from webapp.services import backup
    with host.app_context():
        snapshot = backup.backup(str(tmp_path / "snap.sqlite3")).path
        before = hashlib.sha256((tmp_path / "panel.db").read_bytes()).hexdigest()
        with pytest.raises(Conflict, match="shares the host panel's SQLite database"):
            backup.restore(snapshot, force=True)
    assert hashlib.sha256((tmp_path / "panel.db").read_bytes()).hexdigest() == before
