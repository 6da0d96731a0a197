"""`db copy`: SQLite → PostgreSQL and back, on real databases, with every kind of row."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.conftest import make_app
from tests.services.dbrows import downloads, secrets_in_clear, seed_every_kind
from webapp import db
from webapp.errors import Conflict
from webapp.models import Base, Certificate, Setting
from webapp.services import dbcopy


def _raw_secrets(url: str) -> list:
    """The stored ciphertext, straight from the database."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = [conn.execute(sa.text(f"select {c} from {t} order by 1")).all()
                for t, c in (("sslm_ca_profile", "eab_hmac"), ("sslm_certificate_version", "private_key"),
                             ("sslm_tech_zone", "secrets"), ("sslm_notification_channel", "secret"))]
    engine.dispose()
    return rows


def _copy(app, url, **kwargs):
    with app.app_context():
        return dbcopy.copy_to(url, **kwargs)


def test_sqlite_to_postgresql_and_back_after_a_key_rotation(tmp_path, pg_database):
    source = make_app(tmp_path / "a")
    seeded = seed_every_kind(source)
    rotated = source.test_cli_runner().invoke(args=["sslmanager", "rotate-encryption-key"])
    assert rotated.exit_code == 0, rotated.output
    key = (tmp_path / "a" / "instance" / "encryption.key").read_text().strip()
    expected = secrets_in_clear(source)
    served = downloads(source, seeded["certificate_id"])
    source_url = f"sqlite:///{tmp_path / 'a' / 'instance' / 'sslmanager.db'}"

    result = _copy(source, pg_database)
    assert {t.name for t in result.tables} == {t.name for t in Base.metadata.sorted_tables}
    assert result.rows >= 17 and all(len(t.checksum) == 64 for t in result.tables)
    assert _raw_secrets(pg_database) == _raw_secrets(source_url)  # ciphertext, not re-encrypted

    on_pg = make_app(tmp_path / "b", SSLMANAGER_DATABASE_URL=pg_database, SSLMANAGER_ENCRYPTION_KEY=key)
    assert secrets_in_clear(on_pg) == expected

    back = f"sqlite:///{tmp_path / 'back.db'}"
    again = _copy(on_pg, back)  # before a sign-in on on_pg changes its rows
    assert [(t.name, t.rows, t.checksum) for t in again.tables] == \
        [(t.name, t.rows, t.checksum) for t in result.tables]
    assert downloads(on_pg, seeded["certificate_id"]) == served
    on_sqlite = make_app(tmp_path / "c", SSLMANAGER_DATABASE_URL=back, SSLMANAGER_ENCRYPTION_KEY=key)
    assert secrets_in_clear(on_sqlite) == expected
    assert downloads(on_sqlite, seeded["certificate_id"]) == served

    for app in (on_pg, on_sqlite):  # ids go on past the copied ones, and past the deleted one
        with app.app_context():
            cert = Certificate(profile_id=1, domains=["new.test"], common_name="new.test")
            db.session().add(cert)
            db.session().commit()
            assert cert.id == seeded["deleted_id"] + 1
            db.session().remove()
            app.extensions["sslmanager"].engine.dispose()


def test_a_target_holding_rows_is_refused_unless_forced(tmp_path, pg_database):
    source = make_app(tmp_path / "a")
    seed_every_kind(source)
    other = make_app(tmp_path / "b", SSLMANAGER_DATABASE_URL=pg_database)
    with other.app_context():
        db.session().add(Setting(key="theirs", value=1))
        db.session().commit()
        db.session().remove()
        other.extensions["sslmanager"].engine.dispose()
    with pytest.raises(Conflict, match=r"not empty: sslm_setting \(1 rows\)") as refused:
        _copy(source, pg_database)
    assert "--force" in refused.value.hint
    engine = sa.create_engine(pg_database)
    with engine.connect() as conn:  # nothing changed
        assert conn.execute(sa.text("select key from sslm_setting")).scalars().all() == ["theirs"]
    result = _copy(source, pg_database, force=True)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select key from sslm_setting order by key")).scalars().all() == \
            ["reminder_days", "webhook_allow"]
    engine.dispose()
    assert result.rows == 17


def test_copy_to_the_database_in_use_is_refused(tmp_path):
    app = make_app(tmp_path)
    with app.app_context(), pytest.raises(Conflict, match="already uses"):
        dbcopy.copy_to(f"sqlite:///{tmp_path / 'instance' / 'sslmanager.db'}")


def test_the_command_prints_the_tables_and_how_to_switch(tmp_path):
    app = make_app(tmp_path)
    seed_every_kind(app)
    target = tmp_path / "copy.db"
    result = app.test_cli_runner().invoke(args=["sslmanager", "db", "copy", "--to", f"sqlite:///{target}"])
    assert result.exit_code == 0, result.output
    assert "sslm_certificate_version: 2 rows" in result.output
    assert f'SSLMANAGER_DATABASE_URL = "sqlite:///{target}"' in result.output
    assert "encryption.key" in result.output
    again = app.test_cli_runner().invoke(args=["sslmanager", "db", "copy", "--to", f"sqlite:///{target}"])
    assert again.exit_code == 1 and "not empty" in again.output and "--force" in again.output
    bad = app.test_cli_runner().invoke(args=["sslmanager", "db", "copy", "--to", "nonsense://u:pw-secret@x/db"])
    assert bad.exit_code == 1 and "--to" in bad.output and "no driver 'nonsense'" in bad.output
    assert "pw-secret" not in bad.output


def test_the_copy_reads_one_snapshot_while_others_write(any_db_app):
    """Rows committed by another connection after the snapshot's first read are not in it."""
    with any_db_app.app_context():
        engine = any_db_app.extensions["sslmanager"].engine
        settings = next(t for t in dbcopy.raw_tables() if t.name == "sslm_setting")
        with dbcopy.snapshot(engine) as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(settings)).scalar() == 0
            with engine.begin() as writer:
                writer.execute(settings.insert(), [{"key": "late", "value": 1}])
            assert conn.execute(sa.select(sa.func.count()).select_from(settings)).scalar() == 0
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(settings)).scalar() == 1
