"""A realistic host panel that embeds SSL Manager, as a panel developer writes one: its own
Flask-SQLAlchemy models (with a foreign key it never enforced), CSRFProtect, Flask-Login users,
Flask-Migrate, and a layout.html with its own navigation, flash messages, an inline script and
an inline style. It follows the README's embedding recipe line by line."""
from __future__ import annotations

import os

from flask import Flask, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from jinja2 import DictLoader
from sqlalchemy import ForeignKey
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import webapp
from webapp import SSLManager

LAYOUT = """<!doctype html>
<html><head><title>{% block title %}Host panel{% endblock %}</title>
<style>nav.host-nav { background-color: rgb(10, 20, 30); font-family: serif; padding: 3px; }</style>
<script>document.documentElement.dataset.hostScript = "ran";</script>
</head><body>
<div id="modal" class="host-modal"></div>
<nav class="host-nav"><a href="/">Host panel</a> <a href="/sites">Sites</a> <a href="/panel/ssl/">Certificates</a></nav>
{% for category, message in get_flashed_messages(with_categories=true) %}<p class="host-flash">{{ category }}: {{ message }}</p>{% endfor %}
{% block content %}{% endblock %}
</body></html>"""

PAGES = {
    "layout.html": LAYOUT,
    "sites.html": """{% extends "layout.html" %}{% block content %}<h1>Sites</h1>
<ul>{% for s in sites %}<li>{{ s.name }}</li>{% endfor %}</ul>{% endblock %}""",
    "login.html": """{% extends "layout.html" %}{% block content %}<form method="post">
<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<input name="email"><button>Sign in</button></form>{% endblock %}""",
}


def create_app(folder: str, *, exclude_sslm_tables: bool = True, create_tables: bool = True,
               **config) -> Flask:
    """The host panel, its database and instance folder in `folder`."""
    class Base(DeclarativeBase):  # a fresh registry per app: tests build several
        pass

    db = SQLAlchemy(model_class=Base)

    class User(UserMixin, db.Model):
        __tablename__ = "host_user"
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(unique=True)
        is_admin: Mapped[bool] = mapped_column(default=False)

    class Site(db.Model):
        # A foreign key the panel declares but never enforced: SQLite leaves it off by default,
        # and deleting a user has always left their sites behind.
        __tablename__ = "host_site"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]
        owner_id: Mapped[int] = mapped_column(ForeignKey("host_user.id"))

    app = Flask("hostpanel", instance_path=os.path.join(folder, "instance"))
    app.config.update(SECRET_KEY="host-secret",
                      SQLALCHEMY_DATABASE_URI="sqlite:///" + os.path.join(folder, "panel.db"))
    app.jinja_loader = DictLoader(PAGES)
    db.init_app(app)
    CSRFProtect(app)
    Migrate(app, db, include_object=webapp.include_object if exclude_sslm_tables else None,
            directory=os.path.join(folder, "migrations"))
    login_manager = LoginManager(app)
    login_manager.login_view = "login"

    @login_manager.user_loader
    def load_user(user_id):
        return db.session.get(User, int(user_id))

    def can_manage_certificates():
        """SSLMANAGER_AUTHORIZE: anonymous users go to the panel's sign-in page; only admins in."""
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        return current_user.is_admin

    def current_username():
        return current_user.email if current_user.is_authenticated else ""

    app.config.update({
        "SSLMANAGER_AUTHORIZE": can_manage_certificates,
        "SSLMANAGER_CURRENT_USER": current_username,
        "SSLMANAGER_BASE_TEMPLATE": "layout.html",
        "SSLMANAGER_SCHEDULER_ENABLED": False,
        **config})

    @app.route("/")
    def home():
        return redirect(url_for("sites"))

    @app.route("/sites")
    def sites():
        return render_template("sites.html", sites=db.session.execute(db.select(Site)).scalars())

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "POST":
            user = db.session.execute(db.select(User).filter_by(email=request.form["email"])).scalar_one()
            login_user(user)
            flash(f"Welcome, {user.email}.", "success")
            return redirect(request.args.get("next") or url_for("sites"))
        return render_template("login.html")

    @app.route("/logout", methods=["POST"])
    def logout():
        logout_user()
        return redirect(url_for("login"))

    @app.route("/users/<int:user_id>/delete", methods=["POST"])
    def delete_user(user_id):
        db.session.delete(db.session.get(User, user_id))
        db.session.commit()
        return redirect(url_for("sites"))

    app.extensions["hostpanel"] = {"db": db, "User": User, "Site": Site}
    if create_tables:
        with app.app_context():
            db.create_all()
            owner = User(email="owner@example.net")
            db.session.add_all([User(email="admin@example.net", is_admin=True), owner])
            db.session.flush()
            db.session.add(Site(name="shop.example.net", owner_id=owner.id))
            db.session.commit()
    SSLManager().init_app(app, url_prefix="/panel/ssl")
    return app


def cli_app() -> Flask:
    """For `flask --app "tests.embedding.host:cli_app()" ...` in a subprocess."""
    return create_app(os.environ["HOSTPANEL_DIR"], create_tables=False,
                      exclude_sslm_tables=os.environ.get("HOSTPANEL_EXCLUDE", "1") == "1")
