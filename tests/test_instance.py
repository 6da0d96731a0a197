"""The instance folder is private: made 0700 with every file in it 0600 (SQLite's -wal and -shm
included), and a folder or file that group or others can read is repaired at start, with a
warning in the log."""
from __future__ import annotations

import logging
import os
import stat

from tests.conftest import make_app
from webapp import db
from webapp.services import audit


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def written(app) -> None:
    """A write, so SQLite has its -wal and -shm files."""
    with app.app_context():
        audit.record("test", summary="x")
        db.session().commit()


def test_a_fresh_instance_is_0700_and_every_file_in_it_0600(tmp_path):
    old = os.umask(0o022)  # the usual umask, under which SQLite alone makes 0644 files
    try:
        app = make_app(tmp_path)
        written(app)
    finally:
        os.umask(old)
    folder = tmp_path / "instance"
    names = sorted(os.listdir(folder))
    assert {"sslmanager.db", "sslmanager.db-wal", "sslmanager.db-shm", "encryption.key", "secret.key"} <= set(names)
    assert mode(folder) == 0o700
    assert {name: mode(folder / name) for name in names} == dict.fromkeys(names, 0o600)


def test_a_0644_database_in_a_0755_folder_is_repaired_at_start_with_a_warning(tmp_path, caplog):
    app = make_app(tmp_path)
    written(app)
    folder = tmp_path / "instance"
    with app.app_context():
        app.extensions["sslmanager"].engine.dispose()
    os.chmod(folder, 0o755)
    for name in ("sslmanager.db", "sslmanager.db-wal", "sslmanager.db-shm", "secret.key"):
        if (folder / name).exists():
            os.chmod(folder / name, 0o644)
    with caplog.at_level(logging.WARNING, logger="sslmanager.instance"):
        again = make_app(tmp_path)
    written(again)
    assert mode(folder) == 0o700
    assert all(mode(folder / name) == 0o600 for name in os.listdir(folder)), {
        name: oct(mode(folder / name)) for name in os.listdir(folder)}
    warned = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{folder / 'sslmanager.db'} was mode 0644" in warned and "set to 0600" in warned
    assert f"{folder} was mode 0755" in warned
    with caplog.at_level(logging.WARNING, logger="sslmanager.instance"):
        caplog.clear()
        make_app(tmp_path)
    # nothing left to repair, nothing said (by the repair: a claim heartbeat another test's app
    # left running may log here too)
    assert not [r for r in caplog.records if r.name == "sslmanager.instance"]


def test_an_sqlite_database_outside_the_instance_is_created_0600_too(tmp_path):
    target = tmp_path / "elsewhere" / "ssl.db"
    target.parent.mkdir()
    app = make_app(tmp_path, SSLMANAGER_DATABASE_URL=f"sqlite:///{target}")
    written(app)
    assert mode(target) == 0o600 and mode(f"{target}-wal") == 0o600
