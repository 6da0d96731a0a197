"""Shared fixtures: an app on a fresh instance folder, clients signed in or not, the lab."""
from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from webapp import create_app, db
from webapp.services.auth import create_admin

pytest_plugins = ["tests.lab.fixtures"]

ADMIN = ("admin", "correct horse battery")


def make_app(tmp_path, **config):
    """A standalone app on its own instance folder, migrated."""
    settings = {"TESTING": True, "SSLMANAGER_INSTANCE_PATH": str(tmp_path / "instance"),
                "SSLMANAGER_SCHEDULER_ENABLED": False,
                "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES": True}
    settings.update(config)
    app = create_app(settings)
    with app.app_context():
        db.upgrade()
    return app


class CsrfClient(FlaskClient):
    """A test client that sends the CSRF token the way htmx does (X-CSRFToken header)."""

    token: str | None = None

    def open(self, *args, **kwargs):
        method = kwargs.get("method", "GET").upper()
        if method in {"POST", "PUT", "PATCH", "DELETE"} and self.token and not kwargs.pop("no_csrf", False):
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRFToken", self.token)
            kwargs["headers"] = headers
        else:
            kwargs.pop("no_csrf", None)
        return super().open(*args, **kwargs)

    def fetch_token(self, path="/login") -> str:
        html = super().open(path).get_data(as_text=True)
        self.token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        return self.token


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    app.test_client_class = CsrfClient
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def admin_client(app):
    """A client signed in as an admin."""
    with app.app_context():
        create_admin(*ADMIN)
    client = app.test_client()
    client.fetch_token()
    resp = client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    client.fetch_token("/")
    return client
