"""`backup` and `restore` on real SQLite and PostgreSQL: a fresh instance with the key serves what
the old one did; a snapshot under another key is refused before anything changes."""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import uuid
from datetime import timedelta

import pytest

from tests.conftest import make_app
from tests.services.dbrows import downloads, secrets_in_clear, seed_every_kind
from webapp import db
from webapp.errors import Conflict, CryptoError
from webapp.models import Lease, utcnow
from webapp.services import backup, dbcopy


def _instance_with_key(tmp_path, name, key_from, **config):
    """A fresh instance holding another instance's data key file (as an operator restores it)."""
    folder = tmp_path / name / "instance"
    folder.mkdir(parents=True)
    shutil.copy(key_from / "instance" / "encryption.key", folder / "encryption.key")
    return make_app(tmp_path / name, **config)


def _counts(app):
    with app.app_context():
        with app.extensions["sslmanager"].engine.connect() as conn:
            return dbcopy.row_counts(conn)


def _close(*apps):
    for app in apps:
        with app.app_context():
            db.session().remove()
            app.extensions["sslmanager"].engine.dispose()


@pytest.fixture
def second_pg_database(lab_postgres):
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield lab_postgres.create_database(name)
    lab_postgres.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request):
    """The database URLs of the old instance and of the new one (None: SQLite in the instance)."""
    if request.param == "sqlite":
        return None, None
    return request.getfixturevalue("pg_database"), request.getfixturevalue("second_pg_database")


def _config(url):
    return {"SSLMANAGER_DATABASE_URL": url} if url else {}


def test_a_restore_on_a_fresh_instance_serves_the_same_certificates(tmp_path, urls):
    old = make_app(tmp_path / "old", **_config(urls[0]))
    seeded = seed_every_kind(old)
    expected, served = secrets_in_clear(old), downloads(old, seeded["certificate_id"])
    result = old.test_cli_runner().invoke(args=["sslmanager", "backup", "--out", str(tmp_path / "snap")])
    assert result.exit_code == 0, result.output
    assert "Snapshot written to" in result.output and "Not in it: the data key" in result.output
    assert "encryption.key" in result.output
    snapshot = (tmp_path / "snap").read_bytes()
    assert snapshot.startswith(b"SQLite format 3" if urls[0] is None else b"PGDMP")
    assert b"eab-hmac-secret" not in snapshot and b"BEGIN PRIVATE KEY" not in snapshot

    new = _instance_with_key(tmp_path, "new", tmp_path / "old", **_config(urls[1]))
    restored = new.test_cli_runner().invoke(args=["sslmanager", "restore", str(tmp_path / "snap")])
    assert restored.exit_code == 0, restored.output
    assert "Restored" in restored.output
    assert secrets_in_clear(new) == expected
    assert downloads(new, seeded["certificate_id"]) == served
    _close(old, new)


def test_a_snapshot_under_another_key_is_refused_and_nothing_changes(tmp_path, urls):
    old = make_app(tmp_path / "old", **_config(urls[0]))
    seed_every_kind(old)
    with old.app_context():
        path = backup.backup(str(tmp_path / "snap")).path
    other = make_app(tmp_path / "other", **_config(urls[1]))  # a key of its own
    with other.app_context():
        db.session().add(Lease(name="mine", holder="x"))
        db.session().commit()
    before = _counts(other)
    with other.app_context(), pytest.raises(CryptoError, match="cannot open the snapshot's secrets") as refused:
        backup.restore(path, force=True)
    assert "Nothing was changed" in str(refused.value) and "encryption.key" in refused.value.hint
    assert _counts(other) == before == {"sslm_lease": 1}
    result = other.test_cli_runner().invoke(args=["sslmanager", "restore", path, "--force"])
    assert result.exit_code == 1 and "cannot open the snapshot's secrets" in result.output
    _close(old, other)


def test_a_non_empty_database_or_a_running_service_is_refused(tmp_path):
    old = make_app(tmp_path / "old")
    seed_every_kind(old)
    with old.app_context():
        path = backup.backup(str(tmp_path / "snap")).path
    new = _instance_with_key(tmp_path, "new", tmp_path / "old")
    live = tmp_path / "new" / "instance" / "sslmanager.db"
    with new.app_context():
        db.session().add(Lease(name="dispatch", holder="node-b", until=utcnow() + timedelta(seconds=30)))
        db.session().commit()
        with pytest.raises(Conflict, match=r"in use: a scheduler \(node-b\) holds the dispatch lease"):
            backup.restore(path, force=True)
        db.session().get(Lease, "dispatch").until = None
        db.session().commit()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:  # `run` on this instance
            listener.bind(str(tmp_path / "new" / "instance" / "control.sock"))
            listener.listen()
            with pytest.raises(Conflict, match="in use: a service of this instance listens on"):
                backup.restore(path, force=True)
        os.remove(tmp_path / "new" / "instance" / "control.sock")
        digest = hashlib.sha256(live.read_bytes()).hexdigest()
        with pytest.raises(Conflict, match=r"already holds rows: sslm_lease \(1 rows\)") as refused:
            backup.restore(path)
        assert "--force" in refused.value.hint
        assert hashlib.sha256(live.read_bytes()).hexdigest() == digest
        result = backup.restore(path, force=True)
    assert result.kept and (tmp_path / "new" / "instance").joinpath(result.kept.rsplit("/", 1)[1]).exists()
    assert _counts(new) == _counts(old)
    _close(old, new)


def test_a_file_that_is_not_a_snapshot_is_refused(tmp_path):
    app = make_app(tmp_path)
    (tmp_path / "junk").write_text("hello")
    result = app.test_cli_runner().invoke(args=["sslmanager", "restore", str(tmp_path / "junk")])
    assert result.exit_code == 1 and "not a snapshot made by `sslmanager backup`" in result.output
