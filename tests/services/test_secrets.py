"""Secrets at rest: rotation re-encrypts everything under a new key without loss."""
from __future__ import annotations

import os

import pytest

from tests.conftest import make_app
from webapp import create_app, db
from webapp.errors import CryptoError
from webapp.models import CAProfile, TechZone


def seed(app):
    with app.app_context():
        db.session().add_all([CAProfile(name="A", module="zerossl", eab_hmac="h1", api_key="k1", account_key="ak"),
                              TechZone(name="acme.tech.test", provider="rfc2136", secrets='{"tsig_secret": "s"}')])
        db.session().commit()


def test_rotate_command_re_encrypts_every_secret_and_keeps_the_old_key_file(tmp_path):
    app = make_app(tmp_path)
    seed(app)
    instance = tmp_path / "instance"
    old_key = (instance / "encryption.key").read_text()
    result = app.test_cli_runner().invoke(args=["sslmanager", "rotate-encryption-key"])
    assert result.exit_code == 0 and "Re-encrypted 4 secrets" in result.output, result.output
    new_key = (instance / "encryption.key").read_text()
    assert new_key != old_key and oct(os.stat(instance / "encryption.key").st_mode & 0o777) == "0o600"
    assert [p.name for p in instance.glob("encryption.key.old-*")]
    fresh = create_app({"SSLMANAGER_INSTANCE_PATH": str(instance)})  # reads the new key only
    with fresh.app_context():
        profile = db.session().query(CAProfile).one()
        assert (profile.eab_hmac, profile.api_key, profile.account_key) == ("h1", "k1", "ak")
        assert db.session().query(TechZone).one().secrets == '{"tsig_secret": "s"}'


def test_secrets_under_an_unknown_key_fail_loudly(tmp_path):
    app = make_app(tmp_path)
    seed(app)
    other = tmp_path / "other"
    other.mkdir()
    (tmp_path / "instance" / "encryption.key").rename(other / "stash.key")
    from webapp.crypto import new_data_key
    app2 = create_app({"SSLMANAGER_INSTANCE_PATH": str(tmp_path / "instance"),
                       "SSLMANAGER_ENCRYPTION_KEY": new_data_key()})
    with app2.app_context(), pytest.raises(CryptoError, match="key SSL Manager does not have"):
        db.session().query(CAProfile).one().eab_hmac


def test_env_key_rotation_needs_the_new_key_given(tmp_path):
    from webapp.crypto import new_data_key
    key = new_data_key()
    app = make_app(tmp_path, SSLMANAGER_ENCRYPTION_KEY=key)
    seed(app)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["sslmanager", "rotate-encryption-key"]).exit_code == 1
    new = new_data_key()
    assert runner.invoke(args=["sslmanager", "rotate-encryption-key", "--new-key", new]).exit_code == 0
    app2 = create_app({"SSLMANAGER_INSTANCE_PATH": str(tmp_path / "instance"), "SSLMANAGER_ENCRYPTION_KEY": new})
    with app2.app_context():
        assert db.session().query(CAProfile).one().api_key == "k1"
