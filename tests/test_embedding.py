"""A host panel with its own Flask-SQLAlchemy, CSRFProtect and login embeds SSL Manager
under /panel/ssl; its own pages keep working and its login decides who sees ours."""
from __future__ import annotations

import re

import pytest
from flask import Flask, render_template_string, session
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from jinja2 import DictLoader
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from webapp import SSLManager, db as sslm_db
from webapp.models import CAProfile


def host_can_see_ssl() -> bool:
    return session.get("host_user") == "root"


def make_host(tmp_path):
    class HostBase(DeclarativeBase):  # a fresh registry per host app
        pass

    host_db = SQLAlchemy(model_class=HostBase)

    class Customer(host_db.Model):
        __tablename__ = "customer"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    app = Flask("hostpanel", instance_path=str(tmp_path / "host-instance"))
    app.config.update(
        SECRET_KEY="host-secret", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/host.db",
        SSLMANAGER_INSTANCE_PATH=str(tmp_path / "sslm"),
        SSLMANAGER_AUTHORIZE="tests.test_embedding:host_can_see_ssl",
        SSLMANAGER_BASE_TEMPLATE="host_base.html",
        SSLMANAGER_SCHEDULER_ENABLED=False)
    host_db.init_app(app)
    CSRFProtect(app)
    app.jinja_loader = DictLoader({
        "host_base.html": "<html><body><nav>HOST PANEL NAV</nav>{% block content %}{% endblock %}</body></html>"})

    @app.route("/customers")
    def customers():
        return render_template_string("{% for c in rows %}{{ c.name }} {% endfor %}",
                                      rows=host_db.session.execute(host_db.select(Customer)).scalars())

    @app.route("/login-as/<name>")
    def login_as(name):
        session["host_user"] = name
        return "ok"

    with app.app_context():
        host_db.create_all()
        host_db.session.add(Customer(name="ACME Corp"))
        host_db.session.commit()
    SSLManager().init_app(app, url_prefix="/panel/ssl")
    with app.app_context():
        sslm_db.upgrade()
    return app


@pytest.fixture
def host(tmp_path):
    return make_host(tmp_path)


def test_host_pages_keep_working(host):
    client = host.test_client()
    assert client.get("/customers").get_data(as_text=True).strip() == "ACME Corp"


def test_host_decides_who_sees_ssl_manager(host):
    client = host.test_client()
    assert client.get("/panel/ssl/ca/").status_code == 403
    client.get("/login-as/guest")
    assert client.get("/panel/ssl/ca/").status_code == 403
    client.get("/login-as/root")
    assert client.get("/panel/ssl/ca/").status_code == 200
    assert client.get("/panel/ssl/healthz").get_json()["status"] == "ok"


def test_pages_extend_the_host_base_template_and_link_under_the_prefix(host):
    client = host.test_client()
    client.get("/login-as/root")
    html = client.get("/panel/ssl/ca/").get_data(as_text=True)
    assert "HOST PANEL NAV" in html and 'href="/panel/ssl/ca/new"' in html
    assert "/panel/ssl/static/vendor/htmx.min.js" in html  # our assets come with our pages


def test_host_csrf_and_ours_accept_the_same_token_and_refuse_none(host):
    client = host.test_client()
    client.get("/login-as/root")
    assert client.post("/panel/ssl/ca/new", data={"name": "LE", "module": "letsencrypt"}).status_code == 400
    html = client.get("/panel/ssl/ca/new").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    resp = client.post("/panel/ssl/ca/new", data={"name": "LE", "module": "letsencrypt"},
                       headers={"X-CSRFToken": token})
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/panel/ssl/ca/")
    with host.app_context():
        assert sslm_db.session().query(CAProfile).one().name == "LE"


def test_our_tables_live_beside_the_hosts_in_its_database(host, tmp_path):
    import sqlite3
    tables = {r[0] for r in sqlite3.connect(tmp_path / "host.db").execute(
        "select name from sqlite_master where type='table'")}
    assert "customer" in tables and "sslm_ca_profile" in tables and "sslm_alembic_version" in tables


def test_commands_are_under_the_flask_sslmanager_group(host):
    result = host.test_cli_runner().invoke(args=["sslmanager", "ca", "list"])
    assert result.exit_code == 0, result.output


def test_security_headers_only_on_our_responses(host):
    client = host.test_client()
    client.get("/login-as/root")
    assert client.get("/panel/ssl/ca/").headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Content-Type-Options" not in client.get("/customers").headers


def host_recent_login() -> bool:
    return session.get("host_fresh") == "yes"


def _embedded_key(host, tmp_path):
    from tests.live import make_certificate
    host.config["SSLMANAGER_INSTANCE_PATH"] = str(tmp_path / "sslm")
    return make_certificate(host)


def test_embedded_key_downloads_follow_the_hosts_login_or_its_recent_auth_check(host, tmp_path):
    cert_id = _embedded_key(host, tmp_path)
    client = host.test_client()
    client.get("/login-as/root")
    url = f"/panel/ssl/certificates/{cert_id}/download/privkey.pem"
    assert "PRIVATE KEY-----" in client.get(url).get_data(as_text=True)  # no check set: the host's login
    host.config["SSLMANAGER_RECENT_AUTH"] = "tests.test_embedding:host_recent_login"
    refused = client.get(url)
    assert refused.status_code == 403 and "recent sign-in" in refused.get_data(as_text=True)
    with client.session_transaction() as s:
        s["host_fresh"] = "yes"
    assert "PRIVATE KEY-----" in client.get(url).get_data(as_text=True)


def test_embedded_limits_apply_to_our_routes_only(host):
    client = host.test_client()
    client.get("/login-as/root")
    big = client.post("/panel/ssl/ca/new", data={"name": "x" * (2 * 1024 * 1024)})
    assert big.status_code == 413 and "Request too large" in big.get_data(as_text=True)
    assert host.config.get("MAX_CONTENT_LENGTH") is None  # the host's own limit is untouched
