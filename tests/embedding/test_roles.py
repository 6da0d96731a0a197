"""Embedded, the host maps its own users to SSL Manager's roles: its SSLMANAGER_AUTHORIZE hook
returns a role name ("viewer", "operator", "admin"); exactly True still means admin. The role
then holds on every page as standalone: hidden buttons, 403 and an audit line."""
from __future__ import annotations

from flask_login import current_user
from sqlalchemy import select

from webapp import db as sslm_db
from webapp.models import AuditEvent

from .conftest import csrf_token, make_host, sign_in


def role_of_host_user():
    """A panel's mapping: its admins manage SSL Manager, site owners only look."""
    if not current_user.is_authenticated:
        return False
    return "admin" if current_user.is_admin else "viewer"


def test_the_hook_maps_host_users_to_roles(tmp_path):
    host = make_host(tmp_path, SSLMANAGER_AUTHORIZE=role_of_host_user)
    owner = sign_in(host.test_client(), "owner@example.net")
    admin = sign_in(host.test_client(), "admin@example.net")
    assert owner.get("/panel/ssl/certificates/").status_code == 200
    assert 'id="create-certificate"' not in owner.get("/panel/ssl/certificates/").get_data(as_text=True)
    assert 'id="create-certificate"' in admin.get("/panel/ssl/certificates/").get_data(as_text=True)
    assert owner.get("/panel/ssl/certificates/new").status_code == 403
    token = csrf_token(owner, "/panel/ssl/certificates/")
    assert owner.post("/panel/ssl/dns/sweep", data={"csrf_token": token}).status_code == 403
    assert admin.get("/panel/ssl/certificates/new").status_code == 200
    with host.app_context():
        refused = sslm_db.session().scalars(select(AuditEvent).filter_by(action="refused")).all()
        assert [e.actor for e in refused] == ["owner@example.net"] * 2


def test_an_unknown_role_name_is_refused_like_any_other_value(tmp_path):
    host = make_host(tmp_path, SSLMANAGER_AUTHORIZE=lambda: "superuser")
    assert host.test_client().get("/panel/ssl/").status_code == 403
