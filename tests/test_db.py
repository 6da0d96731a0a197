"""Models and migrations on SQLite and on real PostgreSQL."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from tests.conftest import make_app
from webapp import db
from webapp.models import Base, CAProfile, Certificate


def test_migrations_reach_head_and_match_the_models(any_db_app):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    with any_db_app.app_context():
        assert db.current_revision() == db.head_revision()
        with any_db_app.extensions["sslmanager"].engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={
                "version_table": "sslm_alembic_version", "compare_type": False,
                "include_object": lambda obj, name, *_: name not in db.OPTIONAL_INDEXES})
            assert compare_metadata(ctx, Base.metadata) == []


def test_upgrade_twice_is_harmless(any_db_app):
    with any_db_app.app_context():
        db.upgrade()
        assert db.current_revision() == db.head_revision()


def test_models_round_trip_with_encrypted_fields(any_db_app):
    with any_db_app.app_context():
        db.session().add(CAProfile(name="P", module="custom", eab_hmac="hmac-secret"))
        db.session().commit()
        db.session().expire_all()
        profile = db.session().execute(sa.select(CAProfile)).scalar_one()
        assert profile.eab_hmac == "hmac-secret" and profile.created_at.tzinfo is not None
        with any_db_app.extensions["sslmanager"].engine.connect() as conn:
            raw = conn.execute(sa.text("select eab_hmac from sslm_ca_profile")).scalar()
        assert raw.startswith("enc1:") and "hmac-secret" not in raw


def test_postgresql_dump_holds_no_secret_in_clear(tmp_path, lab_postgres, pg_database):
    import subprocess
    app = make_app(tmp_path, SSLMANAGER_DATABASE_URL=pg_database)
    with app.app_context():
        db.session().add(CAProfile(name="P", module="zerossl", eab_hmac="PGSECRETHMAC", api_key="PGSECRETAPI",
                                   account_key="-----BEGIN PRIVATE KEY-----PGSECRETKEY"))
        db.session().commit()
        app.extensions["sslmanager"].engine.dispose()
    dbname = pg_database.rsplit("/", 1)[1]
    dump = subprocess.run(["/usr/lib/postgresql/15/bin/pg_dump", "-h", "127.0.0.1", "-p", str(lab_postgres.port),
                           "-U", "postgres", dbname], capture_output=True, text=True, check=True).stdout
    assert "sslm_ca_profile" in dump
    for secret in ("PGSECRETHMAC", "PGSECRETAPI", "PGSECRETKEY"):
        assert secret not in dump


def test_upgrade_keeps_existing_rows_through_every_migration(any_db_app):
    """Columns added later need a value for rows made earlier: upgrade from the first schema
    with a certificate in the table, then to the head."""
    from webapp.models import Certificate
    with any_db_app.app_context():
        engine = any_db_app.extensions["sslmanager"].engine
        db.session().remove()
        _downgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(sa.text("insert into sslm_ca_profile (name, description, module, ca_key, directory_url, "
                                 "ca_bundle, email, eab_kid, dns_zone, allow_wildcard, dns_ttl, api_timeout, "
                                 "account_url, account_status, account_email, account_directory, last_test_message, "
                                 "created_at, updated_at) values ('P', '', 'custom', '', '', '', '', '', 'z.test', "
                                 "false, 60, 20, '', '', '', '', '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            conn.execute(sa.text("insert into sslm_certificate (profile_id, domains, common_name, search_text, status, "
                                 "key_type, auto_renew, acme_profile, reuse_key, csr, order_url, step, account_url, "
                                 "last_error, last_error_hint, serial, renew_reason, attempts, claimed_by, created_at, "
                                 "updated_at) select id, '[\"a.test\"]', 'a.test', 'a.test', 'draft', 'ec-p256', true, '', "
                                 "false, '', '', '', '', '', '', '', '', 0, '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP "
                                 "from sslm_ca_profile"))
        db.upgrade()
        assert db.current_revision() == db.head_revision()
        cert = db.session().execute(sa.select(Certificate)).scalar_one()
        assert cert.deploy_dir == "" and cert.delegation_message == ""


def _downgrade(engine, revision: str) -> None:
    """Back to an older schema as `sslmanager db upgrade` goes forward: SQLite's foreign keys
    off (set outside the transaction), or a table rebuild would cascade into its children."""
    from alembic import command  # only these tests go down a revision
    cfg = db._alembic_config()
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


def _certificate_row(profile_id: int, name: str):
    """A certificate row written with the columns of schema 0006 (the model has more since)."""
    from webapp.models import Certificate
    s = db.session()
    s.execute(sa.text(
        "insert into sslm_certificate (profile_id, domains, common_name, search_text, status, "
        "key_type, auto_renew, acme_profile, reuse_key, csr, order_url, step, account_url, "
        "last_error, last_error_hint, serial, renew_reason, attempts, claimed_by, "
        "delegation_message, deploy_dir, deploy_command, deploy_probe, deploy_last_message, "
        "created_at, updated_at) values (:p, :d, :n, :s, 'draft', 'ec-p256', true, '', false, "
        "'', '', '', '', '', '', '', '', 0, '', '', '', '', '', '', CURRENT_TIMESTAMP, "
        "CURRENT_TIMESTAMP)"), {"p": profile_id, "d": f'["{name}"]', "n": name, "s": name},
        bind_arguments={"mapper": Certificate})
    s.commit()
    return s.execute(sa.select(Certificate.id).where(Certificate.common_name == name)).one()


def _profile_row(name: str) -> int:
    """A CA profile row written with the columns of schema 0006 (the model has more since)."""
    s = db.session()
    s.execute(sa.text(
        "insert into sslm_ca_profile (name, description, module, ca_key, directory_url, ca_bundle, "
        "email, eab_kid, dns_zone, allow_wildcard, dns_ttl, api_timeout, account_url, account_status, "
        "account_email, account_directory, last_test_message, created_at, updated_at) values (:n, '', "
        "'custom', '', '', '', '', '', 'z.test', false, 60, 20, '', '', '', '', '', CURRENT_TIMESTAMP, "
        "CURRENT_TIMESTAMP)"), {"n": name}, bind_arguments={"mapper": CAProfile})
    s.commit()
    return s.execute(sa.select(CAProfile.id).where(CAProfile.name == name)).scalar_one()


def _version_row(cert_id: int, serial: str) -> None:
    """A certificate version row written with the columns of schema 0006."""
    from webapp.models import CertificateVersion, Encrypted, UTCDateTime, utcnow
    statement = sa.text(
        "insert into sslm_certificate_version (certificate_id, number, cert_pem, chain_pem, alternates, "
        "private_key, serial, issuer, not_before, not_after, order_url, account_url, created_at) values "
        "(:c, 1, 'PEM', '', '[]', :k, :s, '', :t, :t, '', '', :t)").bindparams(
        sa.bindparam("k", type_=Encrypted()), sa.bindparam("t", type_=UTCDateTime()))
    db.session().execute(statement, {"c": cert_id, "k": "KEY", "s": serial, "t": utcnow()},
                         bind_arguments={"mapper": CertificateVersion})


def _certificate(profile_id: int, name: str):
    from webapp.models import Certificate
    cert = Certificate(profile_id=profile_id, domains=[name], common_name=name, status="draft")
    db.session().add(cert)
    db.session().commit()
    return cert


def test_a_deleted_rows_id_is_never_given_again(any_db_app):
    """Deploy hooks, exports, metrics and the audit log name certificates (and profiles, zones,
    channels) by id: a deleted one's id must not come back for the next one."""
    from webapp.models import AuditEvent, TechZone
    with any_db_app.app_context():
        s = db.session()
        profile = CAProfile(name="P", module="custom")
        s.add(profile)
        s.commit()
        first, last = _certificate(profile.id, "a.test"), _certificate(profile.id, "b.test")
        last_id = last.id
        s.delete(last)
        s.commit()
        assert _certificate(profile.id, "c.test").id > last_id > first.id
        for model, fields in ((CAProfile, {"name": "Q", "module": "custom"}),
                              (TechZone, {"name": "z.test"}),
                              (AuditEvent, {"action": "x"})):
            row = model(**fields)
            s.add(row)
            s.commit()
            gone = row.id
            s.delete(row)
            s.commit()
            again = model(**fields)
            s.add(again)
            s.commit()
            assert again.id > gone, model.__tablename__


def test_migration_0007_keeps_every_row_and_counts_past_ids_the_audit_log_names(any_db_app):

    from webapp.models import (
        AuditEvent,
        Certificate,
        CertificateVersion,
        TimelineEvent,
    )
    with any_db_app.app_context():
        engine = any_db_app.extensions["sslmanager"].engine
        db.session().remove()
        _downgrade(engine, "0006")
        s = db.session()
        profile_id = _profile_row("P")
        certs = [_certificate_row(profile_id, f"{n}.test") for n in "abc"]
        for cert in certs:
            _version_row(cert.id, f"s{cert.id}")
            s.add(TimelineEvent(certificate_id=cert.id, message=f"issued {cert.id}"))
        s.commit()
        ids = [c.id for c in certs]
        # The newest certificate deleted before the upgrade, as the service does it.
        s.execute(sa.delete(TimelineEvent).where(TimelineEvent.certificate_id == ids[-1]))
        s.execute(sa.delete(CertificateVersion).where(CertificateVersion.certificate_id == ids[-1]))
        s.execute(sa.delete(Certificate).where(Certificate.id == ids[-1]))
        s.add(AuditEvent(action="certificate deleted", object_type="certificate", object_id=str(ids[-1])))
        s.commit()
        s.remove()

        db.upgrade()
        assert db.current_revision() == db.head_revision()
        s = db.session()
        assert sorted(c.id for c in s.query(Certificate)) == ids[:2]
        assert sorted(v.certificate_id for v in s.query(CertificateVersion)) == ids[:2]
        assert sorted(e.message for e in s.query(TimelineEvent)) == [f"issued {i}" for i in ids[:2]]
        assert s.query(CAProfile).one().name == "P"
        assert _certificate(profile_id, "d.test").id > ids[-1]  # past the deleted one
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                schema = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = "
                                              "'sslm_certificate'").scalar()
                assert "AUTOINCREMENT" in schema


def test_migration_0019_dates_pending_certificates_from_their_timeline(any_db_app):
    """pending_since for rows made before it: the latest "pending: waiting" line, else creation."""
    with any_db_app.app_context():
        engine = any_db_app.extensions["sslmanager"].engine
    _downgrade(engine, "0018")  # back to the schema before the column, as an older version left it
    from webapp.models import TimelineEvent
    day = lambda text: datetime.fromisoformat(text + "T00:00:00+00:00")  # noqa: E731
    with engine.begin() as conn:  # Core inserts name only the columns 0018 has
        profile = conn.execute(sa.insert(CAProfile.__table__).values(name="P", module="custom")).inserted_primary_key[0]
        ids = [conn.execute(sa.insert(Certificate.__table__).values(
            profile_id=profile, domains=["x.test"], common_name="x.test", search_text="x.test", status=status,
            created_at=day("2026-01-01"))).inserted_primary_key[0] for status in ("pending", "pending", "active")]
        conn.execute(sa.insert(TimelineEvent.__table__), [
            {"certificate_id": cid, "at": day(at), "level": "info",
             "message": "pending: waiting for the _acme-challenge CNAMEs"}
            for cid, at in ((ids[0], "2026-03-01"), (ids[0], "2026-02-01"), (ids[2], "2026-03-01"))])
    with any_db_app.app_context():
        db.upgrade()
        got = {c.id: c.pending_since for c in db.session().execute(sa.select(Certificate)).scalars()}
    assert got[ids[0]] == day("2026-03-01") and got[ids[1]] == day("2026-01-01") and got[ids[2]] is None
