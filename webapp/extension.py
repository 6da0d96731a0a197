"""The extension and the app factory: `create_app()` for standalone use,
`SSLManager().init_app(host_app)` to embed. Both run the same code: standalone is the embedded
extension mounted at "/" plus a login page. Import them from `webapp`."""
from __future__ import annotations

import functools
import os
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable

import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as config_module
from . import instance
from .crypto import Keyring, load_keyring
from .errors import ConfigError
from .models import BIND_KEY


@dataclass
class State:
    """What the extension keeps per app, at app.extensions["sslmanager"]."""

    db: SQLAlchemy
    keyring: Keyring
    instance_path: str
    standalone: bool
    url_prefix: str
    scheduler: Any = None
    schema_current: bool = False
    # Adds the pages to an app built without them (`sslmanager run`): a call, so that the
    # commands never import this module, which registers them.
    add_pages: Callable[[], None] = lambda: None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def engine(self) -> sa.engine.Engine:
        return self.db.engines[BIND_KEY]


class SSLManager:
    """The Flask extension. `init_app(host_app, url_prefix="/ssl")` mounts every page."""

    def __init__(self, app: Flask | None = None, **kwargs: Any):
        if app is not None:
            self.init_app(app, **kwargs)

    def init_app(self, app: Flask, url_prefix: str = "/ssl", *, standalone: bool = False,
                 web: bool = True) -> None:
        """`web=False`: database, keys and config only, no pages (the `sslmanager` commands
        other than `run`, which then skip importing and routing every blueprint)."""
        instance_path = (app.config.get("SSLMANAGER_INSTANCE_PATH")
                         or config_module.instance_path_from_env() or app.instance_path)
        instance.prepare(instance_path, whole_folder=standalone)
        config_module.load(app.config, instance_path)
        app.config["SSLMANAGER_INSTANCE_PATH"] = instance_path

        db = _attach_database(app, instance_path)
        keyring = _load_keyring(app, db, instance_path)
        state = State(db=db, keyring=keyring, instance_path=instance_path,
                      standalone=standalone, url_prefix=url_prefix.rstrip("/"))
        state.add_pages = functools.partial(mount_web, app)
        app.extensions["sslmanager"] = state
        if web:
            mount_web(app)


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's `include_object` for a host's own migrations: leave out every `sslm_` table
    (ours, with their own history in sslm_alembic_version), so `flask db migrate` never drops
    them. `Migrate(app, db, include_object=webapp.include_object)`."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return not str(table or "").startswith("sslm_")


def mount_web(app: Flask) -> None:
    """Add the pages (and `flask sslmanager ...`) to an app set up without them; idempotent."""
    # the pages and commands load only when mounted (one-shot commands skip them)
    from . import api
    from .blueprints import bp, register
    from .cli import register_cli
    if bp.name in app.blueprints:
        return
    state: State = app.extensions["sslmanager"]
    register_cli(app)  # first: Flask adds a blueprint's CLI group only if it has commands
    register(app, url_prefix=state.url_prefix or "/", standalone=state.standalone)
    api.register(app, url_prefix=state.url_prefix or "/")


def _database_url(app: Flask, instance_path: str) -> str | None:
    url = app.config.get("SSLMANAGER_DATABASE_URL")
    if url:
        return url
    if "sqlalchemy" in app.extensions:
        return None  # embedded: share the host's database (our tables carry a prefix)
    return config_module.database_url(app.config, instance_path)


def _attach_database(app: Flask, instance_path: str) -> SQLAlchemy:
    """Use the host's Flask-SQLAlchemy instance when it has one, else our own; add our bind."""
    url = _database_url(app, instance_path)
    db = app.extensions.get("sqlalchemy")
    ours = db is None  # an engine we create is ours to tune; the host's is not
    if db is None:
        db = SQLAlchemy()
        app.config.setdefault("SQLALCHEMY_BINDS", {})[BIND_KEY] = url
        db.init_app(app)
    with app.app_context():
        engines = db.engines
        if BIND_KEY not in engines:
            # The host's instance was set up before us; add our engine beside its own.
            engines[BIND_KEY] = sa.create_engine(url) if url else engines[None]  # type: ignore[index]
            ours = ours or bool(url)
        engine = engines[BIND_KEY]
    # Only on our own engine: on the host's, foreign_keys=ON would fail deletes its schema never
    # enforced, WAL would change its database file, and its file's mode is the host's to guard.
    # Our services delete their own children, so our integrity never depends on the pragma.
    if ours and engine.dialect.name == "sqlite":
        instance.private_sqlite_file(engine.url.database or "")  # before the first connect
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return db


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the scheduler write while pages read; the busy timeout waits out short locks
    # instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _load_keyring(app: Flask, db: SQLAlchemy, instance_path: str) -> Keyring:
    """Load the data key; create one only for a database that holds nothing yet."""
    configured = app.config.get("SSLMANAGER_ENCRYPTION_KEY")
    key_file = os.path.join(instance_path, "encryption.key")
    if not configured and not os.path.exists(key_file):
        with app.app_context():
            has_data = sa.inspect(db.engines[BIND_KEY]).has_table("sslm_ca_profile")
        if has_data:
            raise ConfigError(
                f"The encryption key is missing: {key_file} does not exist and "
                "SSLMANAGER_ENCRYPTION_KEY is not set, but the database already holds data.",
                hint="Restore encryption.key from your backup (or set SSLMANAGER_ENCRYPTION_KEY). "
                     "SSL Manager will not make a new key: the stored secrets need the old one.")
    return load_keyring(instance_path, configured, create=True)


def create_app(test_config: dict[str, Any] | None = None, *, web: bool = True) -> Flask:
    """The standalone app: SSL Manager at "/", with its own login page (`web=False`: no pages,
    for one-shot commands; `mount_web` adds them later)."""
    instance_path = ((test_config or {}).get("SSLMANAGER_INSTANCE_PATH")
                     or config_module.instance_path_from_env()
                     or os.path.abspath("instance"))
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True,
                static_folder=None)
    instance.prepare(instance_path, whole_folder=True)
    if test_config:
        app.config.update(test_config)
    config_module.load(app.config, instance_path, test_config)
    app.config["SECRET_KEY"] = app.config.get("SSLMANAGER_SECRET_KEY") or _secret_key(instance_path)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    SSLManager(app, url_prefix="/", standalone=True, web=web)
    _trust_proxies(app)
    return app


def _trust_proxies(app: Flask) -> None:
    """Behind SSLMANAGER_TRUSTED_PROXIES reverse proxies, take the client address, scheme and
    host from their X-Forwarded-* headers (Werkzeug's ProxyFix, that many hops). Without the
    setting those headers are ignored: anyone could send them."""
    hops = app.config.get("SSLMANAGER_TRUSTED_PROXIES") or 0
    try:
        hops = int(hops)
    except (TypeError, ValueError):
        raise ConfigError(f"SSLMANAGER_TRUSTED_PROXIES: {hops!r} is not a number of proxies.",
                          hint="Set it to the number of reverse proxies in front of SSL Manager "
                               "(usually 1), or 0 for none.") from None
    if hops < 0:
        raise ConfigError(f"SSLMANAGER_TRUSTED_PROXIES: {hops} is negative.",
                          hint="Set it to the number of reverse proxies (0 for none).")
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]


def _secret_key(instance_path: str) -> str:
    """The session signing key, generated once into instance/secret.key (mode 0600)."""
    path = os.path.join(instance_path, "secret.key")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    with open(path) as fh:
        return fh.read().strip()
