"""The host panel of tests/embedding/host.py, migrated, and a way to sign in to it."""
from __future__ import annotations

import re

import pytest

from webapp import db as sslm_db

from .host import create_app


def make_host(folder, **config):
    app = create_app(str(folder), **config)
    with app.app_context():
        sslm_db.upgrade()
        # As after a restart: the connections set up before SSL Manager was mounted are gone.
        for engine in app.extensions["sqlalchemy"].engines.values():
            engine.dispose()
    return app


@pytest.fixture
def host(tmp_path):
    return make_host(tmp_path)


def csrf_token(client, path: str = "/login") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True)).group(1)


def sign_in(client, email: str = "admin@example.net"):
    """The host's own sign-in form (Flask-Login), with the host's CSRF token."""
    resp = client.post("/login", data={"email": email, "csrf_token": csrf_token(client)})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return client
