"""The instance folder holds the database (password hashes, webhook URLs, failed sign-ins),
the data key and the session key: private to the service user. The folder is made 0700 and
every file in it is created 0600; modes that let group or others in are repaired at start,
with a warning in the log. No Flask here."""
from __future__ import annotations

import logging
import os
import stat

log = logging.getLogger("sslmanager.instance")

# Files SSL Manager itself keeps in an instance folder it may share with a host app.
OWN_PREFIXES = ("sslmanager.db", "encryption.key", "secret.key")
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _restrict(path: str, st: os.stat_result, what: str) -> None:
    """Take group's and others' bits away (a 0644 file becomes 0600), saying so."""
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        os.chmod(path, mode & 0o700)
        log.warning("%s %s was mode %04o, readable by other users; set to %04o", what, path, mode,
                    mode & 0o700)


def prepare(path: str, *, whole_folder: bool) -> None:
    """Create the instance folder (0700), or repair its modes: the folder and every file in it
    when it is SSL Manager's own (`whole_folder`), else (a host app's instance folder, when
    embedded) only SSL Manager's files."""
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700, exist_ok=True)
    if whole_folder:
        _restrict(path, os.stat(path), "The instance folder")
    for entry in os.scandir(path):
        if not whole_folder and not entry.name.startswith(OWN_PREFIXES):
            continue
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISREG(st.st_mode):
            _restrict(entry.path, st, "The file")
        elif stat.S_ISDIR(st.st_mode):
            _restrict(entry.path, st, "The folder")


def private_sqlite_file(db_path: str) -> None:
    """Create the SQLite database file 0600 before SQLite does (it would use 0644 under the
    usual umask); SQLite gives its -wal and -shm files the database file's mode. An existing
    database and its side files are repaired."""
    if not db_path or db_path == ":memory:" or db_path.startswith("file:"):
        return
    try:
        fd = os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError:
        return  # a folder that does not exist: SQLite reports it in its own words
    else:
        os.close(fd)
    for name in (db_path, *(db_path + side for side in SQLITE_SIDE_FILES)):
        try:
            st = os.stat(name)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            _restrict(name, st, "The database file")
