"""Models and migrations on SQLite and on real PostgreSQL."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.conftest import make_app
from webapp import db
from webapp.models import Base, CAProfile


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_app(request, tmp_path):
    config = {}
    if request.param == "postgresql":
        config["SSLMANAGER_DATABASE_URL"] = request.getfixturevalue("pg_database")
    app = make_app(tmp_path, **config)
    yield app
    with app.app_context():
        db.session().remove()
        app.extensions["sslmanager"].engine.dispose()


def test_migrations_reach_head_and_match_the_models(any_db_app):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    with any_db_app.app_context():
        assert db.current_revision() == db.head_revision()
        with any_db_app.extensions["sslmanager"].engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": "sslm_alembic_version",
                                                         "compare_type": False})
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
        from alembic import command
        from alembic.config import Config
        cfg = Config()
        cfg.set_main_option("script_location", db.MIGRATIONS)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")
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
